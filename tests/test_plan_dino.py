"""`stcl plan` with DINO ViT encoders: the presets plan clean on 8 x 80 GB, and gradient checkpointing of a
ViT is counted on the meta device (`stcl.plan.vit`), not scaled by the Swin-measured ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stcl.params import Params, load_params
from stcl.presets import preset_params
from stcl.plan.gpus import gpu_by_name
from stcl.commands.plan import graph_jobs
from stcl.plan.jobs import graph_specs, plan_jobs
from stcl.plan.memory import CHECKPOINT_FACTOR, train_memory
from stcl.plan.work import train_step_work

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("preset", "backbone"), [("dinov2", "dinov2_vitl14_reg4"), ("dinov3", "dinov3_vitl16")])
def test_dino_presets_plan_clean_on_8x80gb(tmp_path, monkeypatch, preset, backbone):
    monkeypatch.chdir(tmp_path)  # VSPW's published frame counts
    params = preset_params(preset)
    assert params.model.backbone == backbone and params.model.grad_checkpointing
    assert params.train_stcl.amp == "bf16" and params.train_stcl.optimizer.layer_decay == 0.95
    jobs = graph_jobs(params, None, REPO)  # the graph's jobs, as `stcl plan --preset` reads them
    plans = plan_jobs(params, graph_specs(params, jobs), gpu_by_name("A100-80GB"), 8)
    assert [w for p in plans for w in p.warnings] == []
    by = {p.name: p for p in plans}
    assert 10 < by["train_stcl"].memory_gib < 80 * 0.9
    paper_params = preset_params("paper")
    paper_specs = graph_specs(paper_params, graph_jobs(paper_params, None, REPO))
    paper = {p.name: p for p in plan_jobs(paper_params, paper_specs, gpu_by_name("A100-80GB"), 8)}
    # ViT-L at 768² (55² or 48² tokens, global attention) costs more than Swin-L per frame
    assert by["infer_val"].gpu_hours > paper["infer_val"].gpu_hours


def test_vit_checkpointing_is_counted_not_scaled():
    p = Params()
    model = p.model.model_copy(update={"backbone": "dinov2_tiny", "channels": 16, "aux_channels": 8})
    off = p.model_copy(update={"model": model})
    on = p.model_copy(update={"model": model.model_copy(update={"grad_checkpointing": True})})
    w_off, w_on = train_step_work(off, off.train_stcl), train_step_work(on, on.train_stcl)
    assert w_off.checkpointed_bytes is None and w_on.checkpointed_bytes is not None
    assert w_on.activation_bytes == w_off.activation_bytes  # the unscaled count is the same step
    assert 0 < w_on.checkpointed_bytes < w_off.activation_bytes
    assert w_on.flops > w_off.flops  # the recomputed forward of the blocks
    mem = train_memory(on, on.train_stcl, 1, w_on)
    assert mem.activations == int(w_on.checkpointed_bytes * 1.0)  # amp off in the tiny preset
    assert mem.activations != int(w_off.activation_bytes * CHECKPOINT_FACTOR)


@pytest.mark.parametrize("preset", ["dinov2", "dinov3"])
def test_dino_preset_is_written_as_not_the_paper(tmp_path, preset):
    out = subprocess.run(
        [sys.executable, "-m", "stcl", "params", "--preset", preset], capture_output=True, text=True, check=True
    ).stdout
    assert "NOT the paper" in out
    path = tmp_path / "params.yaml"
    path.write_text(out)
    params = load_params(path)
    assert params.model.backbone.startswith(preset) and params.train_student.optimizer.layer_decay == 0.95
    assert set(yaml.safe_load(out)) == set(Params.model_fields)
