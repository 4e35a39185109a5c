"""`stcl pseudo-label`: teacher pseudo labels on the unlabeled frames, one shard per job, then a gather.

    stcl pseudo-label --shard 0/2      # videos sorted(videos)[0::2] → results/pseudo/VSPW_pseudo/data/<video>/
    stcl pseudo-label --shard 1/2
    stcl pseudo-label --gather         # checks the shard records, writes train.txt + stats.json

The teacher is the ensemble of ``params.teacher.members`` (``<models-dir>/<member>/model.pt``, weights
``params.teacher.weights``), run with ``params.pseudo_label`` scales/flip and ``params.infer`` window,
stride, batch size and amp. Labels: argmax where max probability > ``pseudo_label.threshold`` (strict),
else 255. ``n`` of ``--shard i/n`` must equal ``params.pseudo_label.shards`` (the gather step expects it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stcl.params import Params


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--shard", metavar="I/N", help="run shard I of N (0 <= I < N)")
    mode.add_argument("--gather", action="store_true", help="check all shard records and write the dataset index")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--unlabeled", default="results/prepare/unlabeled.txt", help="list of '<video>/<frame>' lines")
    p.add_argument("--models-dir", default="results/models", help="holds <member>/model.pt")
    p.add_argument("--out", default="results/pseudo", help="output folder (VSPW_pseudo/, shards/, stats.json)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    from stcl.data.classes import VSPW_CLASSES
    from stcl.infer import pseudo_labels as pl
    from stcl.params import load_params

    params = load_params(args.params)
    count = params.pseudo_label.shards
    if not args.gather:
        index, n = pl.parse_shard(args.shard)
        if n != count:
            raise ValueError(f"--shard {args.shard}: N must equal pseudo_label.shards = {count} in {args.params}")
    frames = pl.read_unlabeled_list(args.unlabeled)
    out = Path(args.out)
    dataset, shards_dir = out / "VSPW_pseudo", out / "shards"
    if args.gather:
        stats = pl.gather(
            frames,
            count,
            out_root=dataset,
            shards_dir=shards_dir,
            stats_path=out / "stats.json",
            class_names=VSPW_CLASSES,
        )
        print(
            f"stcl pseudo-label: {stats['videos']} videos, {stats['frames']} frames, "
            f"kept fraction {stats['kept_fraction']:.4f} -> {dataset}"
        )
        return 0
    return _run_shard(params, frames, index, count, args, dataset, shards_dir)


def _run_shard(
    params: Params,
    frames: dict[str, list[str]],
    index: int,
    count: int,
    args: argparse.Namespace,
    dataset: Path,
    shards_dir: Path,
) -> int:
    import torch

    from stcl.data.classes import VSPW_NUM_CLASSES
    from stcl.data.prepare import unlabeled_frame_path
    from stcl.infer import pseudo_labels as pl
    from stcl.infer.ensemble import load_members
    from stcl.infer.multiscale import TTA
    from stcl.infer.sliding import Window

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    checkpoints = [Path(args.models_dir) / m / "model.pt" for m in params.teacher.members]
    members = load_members(checkpoints, params.teacher.weights, device=device, amp=params.infer.amp)
    tta = TTA(
        scales=params.pseudo_label.scales,
        flip=params.pseudo_label.flip,
        window=Window(params.infer.crop_size, params.infer.stride),
        batch_size=params.infer.batch_size,
    )
    result = pl.run_shard(
        members,
        tta,
        frames,
        index,
        count,
        frame_path=lambda video, stem: unlabeled_frame_path(params.data, f"{video}/{stem}"),
        out_root=dataset,
        shards_dir=shards_dir,
        threshold=params.pseudo_label.threshold,
        num_classes=VSPW_NUM_CLASSES,
        device=device,
        workers=params.infer.workers,
        progress=sys.stderr.isatty(),
    )
    print(
        f"stcl pseudo-label: shard {index}/{count}: {len(result.computed)} videos labelled, "
        f"{len(result.skipped)} already complete -> {pl.shard_record_path(shards_dir, index, count)}"
    )
    return 0
