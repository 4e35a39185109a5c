"""`stcl plan --nodes`: the layout of each stage on 1, 2, 4 nodes, compute and all-reduce hours, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stcl.params import Params, preset_params
from stcl.plan.gpus import gpu_by_name
from stcl.plan.nodes import nodes_dict, nodes_table, plan_nodes
from stcl.plan.work import train_step_work


def _tiny(gpus: int = 4, sync_bn: bool = False, projection_input: str = "backbone_last") -> Params:
    """The default params with a tiny backbone, global batch 16, 2 clips per GPU, `gpus` per node."""
    p = Params()
    model = p.model.model_copy(
        update={
            "backbone": "swin_mini",
            "channels": 16,
            "aux_channels": 8,
            "sync_bn": sync_bn,
            "projection_input": projection_input,
        }
    )
    update = {"model": model, "cluster": p.cluster.model_copy(update={"train": p.cluster.train.model_copy(update={"gpus": gpus})})}
    for name in ("pretrain_coco", "train_stcl", "train_ade", "train_student"):
        update[name] = getattr(p, name).model_copy(update={"batch_size": 16, "batch_per_device": 2})
    return p.model_copy(update=update)


def test_layout_compute_and_allreduce_follow_the_stated_formulas() -> None:
    params = _tiny(gpus=4)
    gpu = gpu_by_name("A100-80GB")
    rows = {(r.stage, r.nodes): r for r in plan_nodes(params, gpu, (1, 2, 4), (100.0, 400.0))}
    stage = params.stage("train_stcl")
    work = train_step_work(params, stage)
    one, two, four = rows["train_stcl", 1], rows["train_stcl", 2], rows["train_stcl", 4]
    assert [(r.gpus_per_node, r.batch_per_device, r.accum) for r in (one, two, four)] == [(4, 2, 2), (4, 2, 1), (4, 1, 1)]
    # Compute: iters × accum × clips per micro-batch × FLOPs per clip / rate.
    expect = stage.iters * 2 * work.flops / gpu.rate(stage.amp, "train") / 3600
    assert one.compute_hours == pytest.approx(expect)
    assert two.compute_hours == pytest.approx(expect / 2) and four.compute_hours == pytest.approx(expect / 4)
    # All-reduce: none on one node; 2(n-1)/n × float32 gradients per iteration over the link.
    assert one.allreduce_hours == {"100 Gb/s": 0.0, "400 Gb/s": 0.0}
    bits = 4 * work.parameters * 8
    assert two.allreduce_hours["100 Gb/s"] == pytest.approx(stage.iters * 1.0 * bits / 100e9 / 3600)
    assert four.allreduce_hours["400 Gb/s"] == pytest.approx(stage.iters * 1.5 * bits / 400e9 / 3600)
    assert two.wall_hours["400 Gb/s"] == pytest.approx(two.compute_hours + two.allreduce_hours["400 Gb/s"])
    assert one.warnings == [] and two.warnings == []


def test_batchnorm_and_idle_gpu_warnings() -> None:
    gpu = gpu_by_name("A100-80GB")
    rows = plan_nodes(_tiny(gpus=8), gpu, (1, 4))
    warnings = nodes_dict(rows)["warnings"]
    # 4 nodes × 8 GPUs > 16 clips: 4 GPUs per node, one clip each; without STCL one image meets BatchNorm.
    assert "4 nodes: the global batch 16 keeps 4 of 8 GPUs per node busy: set cluster.train.gpus: 4" in warnings[0]
    bn = [w for w in warnings if "BatchNorm" in w]
    assert len(bn) == 1 and "set model.sync_bn: true" in bn[0], warnings
    # The decoder sees the query frame only (STCL on the encoder): every stage has one sample in its BatchNorm.
    assert bn[0].endswith("(pretrain_coco, train_stcl, train_ade, train_student)"), bn
    fused = nodes_dict(plan_nodes(_tiny(gpus=8, projection_input="fpn_bottleneck"), gpu, (4,)))["warnings"]
    bn = [w for w in fused if "BatchNorm" in w]
    assert len(bn) == 1 and bn[0].endswith("(pretrain_coco, train_ade)"), bn  # the decoder sees 1 clip × 4 frames
    assert not [w for w in nodes_dict(plan_nodes(_tiny(gpus=8, sync_bn=True), gpu, (4,)))["warnings"] if "BatchNorm" in w]
    with pytest.raises(ValueError, match="--nodes must be counts >= 1"):
        plan_nodes(_tiny(), gpu, (0,))


def test_cli_plans_the_paper_preset_on_two_nodes(capsys) -> None:
    from stcl.cli import main

    repo = str(Path(__file__).resolve().parents[1])
    assert main(["plan", "--preset", "paper", "--nodes", "1,2,4", "--json", "--workflow", repo]) == 0
    data = json.loads(capsys.readouterr().out)
    # 4 nodes x 8 GPUs cannot all hold a clip of the global batch 16: the one warning
    assert data["nodes"]["warnings"] == [
        "4 nodes: the global batch 16 keeps 4 of 8 GPUs per node busy: set cluster.train.gpus: 4"
        " (pretrain_coco, train_stcl, train_ade, train_student)"
    ]
    assert data["nodes"]["settings"]["2"] == [
        "cluster.train.nodes: 2", "batch_per_device: 1 (pretrain_coco, train_stcl, train_ade, train_student)"
    ]
    hours = data["nodes"]["training_wall_hours"]
    assert set(hours) == {"1", "2", "4"} and hours["1"]["100 Gb/s"] == hours["1"]["400 Gb/s"]
    assert hours["2"]["400 Gb/s"] < hours["1"]["400 Gb/s"]  # 16 GPUs beat 8 even counting the all-reduce
    assert hours["2"]["100 Gb/s"] > hours["2"]["400 Gb/s"]
    # 2 nodes plan clean: SyncBN (mmseg's UperNet configs) and one clip per GPU
    assert main(["plan", "--preset", "paper", "--nodes", "2", "--link-gbit", "200", "--workflow", repo, "--strict"]) == 0
    text = capsys.readouterr().out
    assert "wall h @200 Gb/s" in text and "train_student      2           2×8×1×1" in text
    assert "to train on 2 node(s) set: cluster.train.nodes: 2; batch_per_device: 1 (pretrain_coco" in text
    assert "\nwarnings:" not in text
