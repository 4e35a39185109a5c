"""`stcl plan --nodes`: the layout of each stage on 1, 2, 4 nodes, compute and all-reduce hours, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stcl.params import TRAIN_STAGES, Params
from stcl.presets import preset_params
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
    for name in TRAIN_STAGES:
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
    assert bn[0].endswith(f"({', '.join(TRAIN_STAGES)})"), bn
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
        f" ({', '.join(TRAIN_STAGES)})"
    ]
    assert data["nodes"]["settings"]["2"] == [
        "cluster.train.nodes: 2", f"batch_per_device: 1 ({', '.join(TRAIN_STAGES)})"
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


def _apply(params: Params, settings: list[str]) -> Params:
    """params with the settings `stcl plan --nodes` advises for one node count applied (and validated)."""
    from stcl.params import merge_overrides, parse_params
    from stcl.presets import recipe_dict

    over: dict = {}
    for item in settings:
        key, _, rest = item.partition(": ")
        value, _, stages = rest.partition(" (")
        targets = [s.strip() for s in stages.rstrip(")").split(",")] if stages else [None]
        for stage in targets:
            path = key.split(".") if stage is None else [stage, key]
            node = over
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = int(value)
    return parse_params(merge_overrides(recipe_dict(params), over), "advice")


def test_no_advice_for_a_layout_that_does_not_split_and_the_advice_given_validates() -> None:
    """`nodes: 8` used to be advised for a batch of 4 that the same plan said does not split over 8 nodes, and
    `nodes: 4` of the paper preset without the `cluster.train.gpus: 4` its own warning asks for."""
    gpu = gpu_by_name("A100-80GB")
    rows = plan_nodes(Params(), gpu, (1, 2, 3, 8))
    settings = nodes_dict(rows)["settings"]
    assert set(settings) == {"1", "2"}
    text = nodes_table(rows, gpu)
    assert "to train on 8 node(s)" not in text and "to train on 3 node(s)" not in text
    assert "8 node(s): no setting trains every stage (see the warnings)" in text
    assert "8 nodes: batch_size 4 does not split over 8 nodes" in text
    paper = preset_params("paper")
    settings = nodes_dict(plan_nodes(paper, gpu, (1, 2, 4)))["settings"]
    assert settings["4"][:2] == ["cluster.train.nodes: 4", "cluster.train.gpus: 4"]
    for n, items in settings.items():
        applied = _apply(paper, items)
        assert applied.cluster.train.nodes == int(n)
    assert _apply(Params(), nodes_dict(rows)["settings"]["2"]).train_stcl.batch_per_device == 2


@pytest.mark.parametrize("text", ["", "1,,2", ",", "2,", "0", "-1", "x", "1.5"])
def test_nodes_argument_refuses_empty_and_malformed_lists_in_one_line(text, capsys) -> None:
    import argparse

    from stcl.commands.plan import add_arguments

    parser = argparse.ArgumentParser(prog="stcl plan")
    add_arguments(parser)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--nodes", text])
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"stcl plan: error: argument --nodes: expected comma-separated numbers > 0 such as 1,2,4, got {text!r}"
    for bad in ("nan", "inf", "100,,400"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--link-gbit", bad])
    args = parser.parse_args(["--nodes", "2,2,4, 1", "--link-gbit", "400,100,400"])
    assert args.nodes == (2, 4, 1) and args.link_gbit == (400.0, 100.0)  # each once, in the order given
