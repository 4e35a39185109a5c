"""The `flow` job of the plan: RAFT over the val frame pairs that TC counts (`stcl flow`, one GPU job).

Work: FLOPs of one frame pair through torchvision ``raft_large`` with 20 refinement iterations at the padded
frame size, counted on the meta device with ``FlopCounterMode`` (matmuls and convolutions, 2 FLOPs per
multiply-add: the all-pairs correlation and every conv of the encoders and the update block; the correlation
lookups, ``grid_sample``, are memory-bound and not counted), times the pairs of the first ``tc.videos`` val
videos. RAFT runs in float32 (as the official script), one pair at a time. The job exists only when
``tc.raft_weights`` is set (as in the graph, workflow/rules/flow.smk).
"""

from __future__ import annotations

import math
from functools import lru_cache

from stcl.params import Params
from stcl.plan.gpus import GPU
from stcl.plan.rows import JobPlan
from stcl.plan.vspw_sizes import VSPW_FRAMES, VSPW_VAL_VIDEOS, frame_size

__all__ = ["raft_pair_flops", "tc_pairs", "flow_plan"]


@lru_cache(maxsize=8)
def raft_pair_flops(height: int, width: int) -> int:
    """FLOPs of one (height, width) frame pair through RAFT as `stcl.flow.raft.raft_flow` runs it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from stcl.flow.raft import RAFT_ITERS, build_raft, padding

    left, right, top, bottom = padding(height, width)
    model = build_raft().to("meta")
    image = torch.zeros((1, 3, height + top + bottom, width + left + right), device="meta")
    with FlopCounterMode(display=False) as counter:
        model(image, image, num_flow_updates=RAFT_ITERS)
    return int(counter.get_total_flops())


def tc_pairs(params: Params) -> tuple[int, int, tuple[int, int]]:
    """(videos, frame pairs, (H, W)) of the TC flows: counted from the data when present, else VSPW's mean."""
    from pathlib import Path

    from stcl.data import vspw
    from stcl.flow.store import select_videos

    root = Path(params.data.vspw_root)
    limit = params.tc.videos
    if (root / "val.txt").is_file():
        videos = select_videos(vspw.read_split(root, "val"), limit)
        pairs = sum(len(vspw.list_frames(root, v)) - 1 for v in videos)
        return len(videos), pairs, frame_size(params)
    if params.data.synthetic:
        n = min(params.synth.videos.val, VSPW_VAL_VIDEOS if limit == "all" else limit)
        return n, n * (params.synth.frames_per_video - 1), (params.synth.height, params.synth.width)
    n = VSPW_VAL_VIDEOS if limit == "all" else min(limit, VSPW_VAL_VIDEOS)
    return n, round(VSPW_FRAMES["val"] * n / VSPW_VAL_VIDEOS) - n, frame_size(params)


def flow_plan(params: Params, gpu: GPU) -> JobPlan:
    """The `flow` job's plan (the graph has the job when ``tc.raft_weights`` is set)."""
    res = params.cluster.infer
    g = max(res.gpus, 1)
    videos, pairs, (height, width) = tc_pairs(params)
    plan = JobPlan("flow", "infer", g, 1, frames=pairs + videos, runtime_hours=res.runtime / 60)
    flops = pairs * raft_pair_flops(height, width)
    seconds = flops / gpu.rate("off", "infer")  # one GPU: the pairs run one at a time
    plan.tflop = flops / 1e12
    plan.job_hours = plan.stage_hours = seconds / 3600
    plan.gpu_hours = plan.job_hours * g  # the job holds cluster.infer.gpus; RAFT uses one
    if plan.job_hours > plan.runtime_hours:
        plan.warnings.append(
            f"projected {plan.job_hours:.1f} h > cluster.infer.runtime {res.runtime} min: set cluster.infer.runtime"
            f" >= {math.ceil(plan.job_hours * 66)}"
        )
    return plan
