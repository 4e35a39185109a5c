"""`stcl plan`: FLOPs through the real model and TTA code on the meta device, the memory method, the
paper preset's plan (clean on 8 x 80 GB, warnings on 1 x 40 GB), its jobs = `snakemake -n --forceall`'s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from stcl.infer.multiscale import TTA, scaled_size
from stcl.infer.sliding import Window, window_grid, window_shape
from stcl.params import Params
from stcl.presets import preset_params
from stcl.plan.gpus import GIB, calibrate, gpu_by_name
from stcl.commands.plan import graph_jobs
from stcl.plan.jobs import graph_specs, plan_jobs
from stcl.plan.memory import train_memory
from stcl.plan.work import predict_frame_flops, stcl_flops, train_step_work


def _tiny() -> Params:
    p = Params()
    return p.model_copy(
        update={"model": p.model.model_copy(update={"backbone": "swin_mini", "channels": 16, "aux_channels": 8})}
    )


def test_frame_flops_are_windows_times_one_window():
    params = _tiny()
    tta = TTA(scales=(0.5, 1.0, 1.5), flip=True, window=Window((32, 32), (24, 24)), batch_size=4)
    from stcl.models.segmentor import build_segmentor

    net = build_segmentor(params.model, 124, device="meta", load_pretrained=False).eval()

    def one(h: int, w: int) -> int:
        with FlopCounterMode(display=False) as fc:
            net.predict(torch.zeros((1, 3, h, w), device="meta"))
        return fc.get_total_flops()

    sizes = [scaled_size(40, 56, s) for s, _ in tta.views]  # 20x28 (smaller than the crop), 40x56, 60x84
    windows = [len(window_grid(h, w, tta.window)) for h, w in sizes]
    assert min(windows) == 1 and max(windows) > 1  # some views need several windows
    expected = sum(n * one(*window_shape(h, w, tta.window)) for n, (h, w) in zip(windows, sizes))
    assert predict_frame_flops(params.model, tta, 40, 56) == expected  # windows of min(crop, size), unpadded
    assert expected < sum(n * one(32, 32) for n in windows)  # less than padding small views to the crop


def test_train_flops_are_about_three_forwards_and_activations_match_real_tensors():
    params = _tiny().model_copy(update={"augment": Params().augment.model_copy(update={"crop_size": (32, 32)})})
    stage = params.train_ade.model_copy(update={"batch_per_device": 2})  # no STCL: query frame only
    work = train_step_work(params, stage)
    from stcl.models.segmentor import build_segmentor

    net = build_segmentor(params.model, 124, device="meta", load_pretrained=False).train()
    with FlopCounterMode(display=False) as fc:
        net(torch.zeros((2, 1, 3, 32, 32), device="meta"))
    assert 2.5 * fc.get_total_flops() <= work.flops <= 3.0 * fc.get_total_flops()  # backward ≈ 2 forwards
    # the meta-device count equals the bytes real CPU tensors save for backward
    torch.manual_seed(0)
    real = build_segmentor(params.model, 124, load_pretrained=False).train()
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        real(torch.rand(2, 4, 3, 32, 32) * 255)
    assert sum(seen.values()) == pytest.approx(work.activation_bytes, rel=0.02)


def test_stcl_flops_closed_form():
    assert stcl_flops(2, 4, (768, 768), 512, 4, None) == 8 * 2 * 36864 * (4 * 36864) * 512
    assert stcl_flops(1, 4, (64, 64), 8, 4, 10) == 8 * 10 * 4 * 256 * 8


def test_memory_method_parts():
    params = preset_params("paper")
    work = train_step_work(params, params.train_stcl)
    assert 230e6 < work.parameters < 240e6  # UperNet Swin-L ≈ 234M (Swin-Transformer README)
    one, eight = train_memory(params, params.train_stcl, 1, work), train_memory(params, params.train_stcl, 8, work)
    assert one.optimizer == 8 * work.parameters and one.ddp_buckets == 0 and eight.ddp_buckets == 4 * work.parameters
    assert one.amp_cache == 2 * work.parameters  # bf16 autocast in the paper preset
    ckpt = params.model_copy(update={"model": params.model.model_copy(update={"grad_checkpointing": True})})
    assert train_memory(ckpt, params.train_stcl, 8, work).activations < eight.activations


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper_graph():
    """The paper preset's jobs from Snakemake's DAG of this repository's workflow."""
    return graph_jobs(preset_params("paper"), None, REPO)


def test_paper_plan_lists_the_jobs_of_snakemake_dry_run(paper_graph, tmp_path):
    """Every job `snakemake -n --forceall` prints for the paper preset is in exactly one row of the plan."""
    import re
    import subprocess
    import sys

    import yaml

    params = preset_params("paper")
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    for root in (params.data.vspw_root, params.data.coco_root, params.data.ade_root):
        (tmp_path / root).mkdir(parents=True)  # the dataset roots exist (empty): Snakemake checks inputs
    snakemake = str(Path(sys.executable).parent / "snakemake")
    cmd = [snakemake, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--forceall", "--configfile", str(config)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    dry: list[str] = []
    for line in out.stdout.splitlines():
        m = re.match(r"(?:local)?rule (\w+):$", line)
        if m:
            dry.append(m.group(1))
        m = re.match(r"\s+wildcards: (.*)$", line)
        if m:
            dry[-1] += "".join(f"-{kv.split('=', 1)[1]}" for kv in m.group(1).split(", "))
    dry.remove("all")
    plans = plan_jobs(params, graph_specs(params, paper_graph), gpu_by_name("A100-80GB"), 8)
    listed = [name for p in plans for name in p.snakemake_jobs]
    assert sorted(listed) == sorted(dry) and len(listed) == len(set(listed))
    assert len([n for n in dry if n.startswith("infer-")]) == 2 * params.infer.shards


def test_paper_preset_plans_clean_on_8x80gb_and_warns_on_1x40gb(paper_graph, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here: VSPW's published frame counts, not a local embedded copy
    params = preset_params("paper")
    jobs = graph_specs(params, paper_graph)
    assert [j.name for j in jobs if j.kind != "cpu" or j.frames] == [
        "prepare",
        "train_ade",  # Table 2's "Swin-L + ADE": no COCO-pre, so it needs nothing but the data
        "pretrain_coco",
        "train_stcl",
        "pseudo_label",
        "train_student",
        "infer_test",
        "infer_val",
        "evaluate",
    ]
    good = plan_jobs(params, jobs, gpu_by_name("A100-80GB"), 8)
    assert [w for p in good for w in p.warnings] == []
    by = {p.name: p for p in good}
    assert by["infer_val"].frames == 24_500 and by["infer_val"].jobs == params.infer.shards
    assert by["train_stcl"].memory_gib < 80 * 0.9  # margin
    bad = plan_jobs(params, jobs, gpu_by_name("A100-40GB"), 1)
    text = " ".join(w for p in bad for w in p.warnings)
    assert "cluster.train.gpus" in text and "cluster.train.runtime" in text
    assert "GiB > 40 GiB" in text and "model.grad_checkpointing: true" in text
    # One clip per GPU would leave the decoder's BatchNorm one query frame, and SyncBN needs several GPUs.
    assert "batch_per_device" not in text
    on8 = " ".join(w for p in plan_jobs(params, jobs, gpu_by_name("V100"), 8) for w in p.warnings)
    assert "train_stcl.batch_per_device: 1" in on8  # SyncBN over 8 GPUs: one clip each is fine


def test_runtime_warning_names_infer_shards(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = preset_params("paper")
    slow = params.model_copy(update={"infer": params.infer.model_copy(update={"shards": 1, "amp": "off"})})
    plans = plan_jobs(slow, graph_specs(slow, graph_jobs(slow, None, REPO)), gpu_by_name("V100"), 8)
    val = next(p for p in plans if p.name == "infer_val")
    assert any("infer.shards >=" in w for w in val.warnings)


def test_cli_json_and_bad_calibration(tmp_path: Path, capsys):
    from stcl.cli import main

    assert main(["plan", "--preset", "paper", "--json", "--workflow", str(REPO)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["warnings"] == [] and data["total_gpu_hours"] > 0
    assert {j["name"] for j in data["jobs"]} >= {"train_stcl", "infer_test"}
    assert main(["plan", "--preset", "paper", "--gpu", "A100-40GB", "--gpus", "1", "--strict", "--workflow", str(REPO)]) == 1
    assert main(["plan", "--preset", "paper", "--workflow", str(tmp_path)]) == 1  # no Snakefile: one line
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="x.json: not a gpu_check.py result"):
        calibrate(gpu_by_name("H100"), bad)
    assert GIB == 2**30


def test_chain_wall_overlaps_the_rows_of_one_graph_level_that_fit_together():
    """Rows that read nothing of each other and sit at the same depth of the graph run at once when their GPUs
    (per job x jobs) fit together; a row that reads another's outputs waits for it."""
    from stcl.plan.report import chain_hours
    from stcl.plan.rows import JobPlan

    a = JobPlan("a", "train", 4, 1, stage_hours=2.0)
    b = JobPlan("b", "train", 4, 1, stage_hours=3.0)
    shards = JobPlan("c", "infer", 1, 8, stage_hours=1.0, after=["a", "b"])
    assert chain_hours([a, b, shards], 8) == 3.0 + 1.0  # a and b side by side on 4 + 4 GPUs
    assert chain_hours([a, b, shards], 4) == 2.0 + 3.0 + 1.0  # one after the other
    b.after = ["a"]
    assert chain_hours([a, b, shards], 8) == 6.0
    cpu = JobPlan("prepare", "cpu", 0, 1, stage_hours=0.0)
    shards.after = []
    assert chain_hours([cpu, shards], 8) == 1.0  # 8 shards on 1 GPU each take the 8 GPUs; CPU rows take none
    assert chain_hours([shards, JobPlan("d", "infer", 1, 8, stage_hours=0.5)], 8) == 1.5

