"""The recipe as the paper states it (docs/recipe.md): the ADE teacher member is Table 2's "Swin-L + ADE",
Table 1's CNNs train with SGD from their own weights, and every run has its own seed stream."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _data_fixtures import write_ade, write_vspw
from stcl.ablations import CNN_OPTIMIZER, TABLE_ABLATIONS, ablation_params, pretrained_note
from stcl.data.clips import DataPaths
from stcl.models import build_segmentor
from stcl.params import CNN_BACKBONES, Params, merge_overrides, parse_params
from stcl.presets import preset_params
from stcl.train.distributed import DistContext
from stcl.train.optim import WarmupPolySchedule, build_optimizer
from stcl.train.seeds import stage_seed
from stcl.train.stage import build_job


@pytest.fixture(scope="module")
def paths(module_tmp) -> DataPaths:
    root = module_tmp("recipe_data")
    return DataPaths(vspw=write_vspw(root / "vspw", n_frames=8), ade=write_ade(root / "ade"))


def _params(**sections) -> Params:
    return parse_params(merge_overrides(Params().model_dump(mode="json"), sections))


def _encoder_file(tmp_path: Path) -> Path:
    """A resnet18 ImageNet-layout (timm) weights file of random values."""
    from safetensors.torch import save_file

    from stcl.models.encoders import build_encoder

    path = tmp_path / "resnet18_imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in build_encoder("resnet18").model.state_dict().items()}, str(path))
    return path


# -- the ADE member: Table 2's "Swin-L + ADE" -----------------------------------------------------------------
def test_train_ade_is_table2_swin_l_plus_ade():
    """No COCO-pre in the default and the paper preset; the row it fills depends on that start."""
    from stcl.metrics.tables import paper_rows_for
    from stcl.roles import model_info

    for params in (Params(), preset_params("paper")):
        assert params.train_ade.init is None and [d.name for d in params.train_ade.datasets] == ["vspw", "ade"]
        info = model_info(params, "train_ade")
        assert paper_rows_for({"model": "train_ade", "model_info": info}) == [("table2", "Swin-L + ADE", None, None)]
    coco_pre = model_info(_params(train_ade={"init": "pretrain_coco"}), "train_ade")
    assert paper_rows_for({"model": "train_ade", "model_info": coco_pre})[0][1] == "Swin-L + COCO-pre + ADE"


def test_train_ade_starts_from_the_baselines_weights(tmp_path, paths):
    """train_ade and Table 2's "Swin-L" baseline both start from model.pretrained: no init file, same encoder."""
    file = _encoder_file(tmp_path)
    params = _params(model={"pretrained": str(file)})
    ade = build_job(params, "train_ade", tmp_path / "ade", paths)
    base = build_job(ablation_params(params, "baseline_resnet18"), "train_stcl", tmp_path / "base", paths)
    assert "init" not in ade.summary and "init" not in base.summary
    ade_enc, base_enc = ade.model.backbone.state_dict(), base.model.backbone.state_dict()
    from safetensors.torch import load_file

    for key, value in load_file(str(file)).items():
        assert torch.equal(ade_enc[f"model.{key}"], value) and torch.equal(base_enc[f"model.{key}"], value), key


# -- Table 1: each encoder family's optimiser and its own weights ----------------------------------------------
def test_cnn_rows_of_table1_train_with_the_papers_sgd():
    """Paper 3.1: SGD lr 0.01, weight decay 1e-4 for the CNNs (momentum 0.9, no warmup: mmseg's CNN schedules);
    the transformers keep the stage's AdamW."""
    params = preset_params("paper")
    names = TABLE_ABLATIONS["table1"]
    cnns = [n for n in names if n.removeprefix("baseline_") in CNN_BACKBONES]
    assert cnns == ["baseline_resnet50", "baseline_resnest101e"]
    for name in names:
        run = ablation_params(params, name)
        model = build_segmentor(run.model, 124, device="meta")
        opt = build_optimizer(model, run.train_stcl.optimizer)
        if name in cnns:
            assert type(opt) is torch.optim.SGD, name
            group = opt.param_groups[0]
            assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.01, 1e-4, 0.9)
            assert WarmupPolySchedule(opt, run.train_stcl.optimizer, run.train_stcl.iters).lr_at(0) == 0.01
        else:
            assert type(opt) is torch.optim.AdamW and run.train_stcl.optimizer == params.train_stcl.optimizer, name
    # The chain's own encoder (tiny: resnet18) keeps the stage's optimiser: its baseline is also Table 2's
    # first row, compared with the chain's runs; another CNN gets SGD at any scale.
    tiny = Params()
    assert ablation_params(tiny, "baseline_resnet18").train_stcl.optimizer == tiny.train_stcl.optimizer
    assert ablation_params(tiny, "baseline_resnet50").train_stcl.optimizer.model_dump() == CNN_OPTIMIZER | {
        k: v for k, v in tiny.train_stcl.optimizer.model_dump().items() if k not in CNN_OPTIMIZER
    }


@pytest.mark.parametrize("preset", ["tiny", "paper", "dinov2", "dinov3"])
def test_every_ablation_of_every_preset_builds_its_optimizer(preset):
    """Each row of Tables 1-3 (with both DINO rows added to Table 1) validates and builds its optimiser's
    parameter groups. The dinov2/dinov3 presets' layer-wise lr decay (0.95) stays on their ViT rows; the
    Swin and CSWin rows of Table 1 drop it (no layers to decay) and keep the rest of the stage's AdamW."""
    from stcl.ablations import table_ablations
    from stcl.params import VIT_DEPTHS

    base = preset_params(preset)
    extra = base.ablations.model_copy(update={"table1_extra": ("dinov2_vitl14_reg4", "dinov3_vitl16")})
    params = base.model_copy(update={"ablations": extra})
    names = dict.fromkeys(n for table in TABLE_ABLATIONS for n in table_ablations(table, params))
    assert len(names) == 11
    stage = params.train_stcl.optimizer
    for name in names:
        run = ablation_params(params, name)  # validates
        dim = run.train_stcl.stcl.dim if run.train_stcl.stcl.enabled else None
        model = build_segmentor(run.model, 124, dim, device="meta")
        opt = build_optimizer(model, run.train_stcl.optimizer)  # refuses layer_decay on an encoder without layers
        assert sum(len(g["params"]) for g in opt.param_groups) == sum(1 for p in model.parameters() if p.requires_grad)
        got = run.train_stcl.optimizer
        if run.model.backbone in CNN_BACKBONES and run.model.backbone != base.model.backbone:
            assert type(opt) is torch.optim.SGD and got.layer_decay is None, name
        elif run.model.backbone in VIT_DEPTHS or run.model.backbone == base.model.backbone:
            assert got == stage, name
        else:  # Swin / CSWin rows
            assert got == stage.model_copy(update={"layer_decay": None}), name
    if preset.startswith("dino"):
        assert stage.layer_decay == 0.95


def test_table1_backbones_load_their_own_weights_file(tmp_path):
    """ablations.pretrained names each backbone's file; model.pretrained (the Swin-L file) is never theirs."""
    file = _encoder_file(tmp_path)
    swin = tmp_path / "swin_large_22k.pth"  # the main encoder's file: never read by a ResNet run
    params = parse_params(
        merge_overrides(
            preset_params("paper").model_dump(mode="json"),
            {"model": {"pretrained": str(swin)}, "ablations": {"pretrained": {"resnet18": str(file)}}},
        )
    )
    run = ablation_params(params, "baseline_resnet18")
    assert run.model.pretrained == file and run.model.backbone == "resnet18"
    model = build_segmentor(run.model.model_copy(update={"channels": 8, "aux_channels": 8}), 124)
    from safetensors.torch import load_file

    conv1 = load_file(str(file))["conv1.weight"]
    assert torch.equal(model.backbone.model.conv1.weight, conv1)
    assert ablation_params(params, "baseline_swin_large_patch4_window12_384").model.pretrained == swin
    assert ablation_params(params, "baseline_resnet50").model.pretrained is None
    note = pretrained_note(params, "baseline_resnet50")
    assert note is not None and "ablations.pretrained.resnet50" in note
    assert pretrained_note(params, "baseline_resnet18") is None


def test_table1_runs_validate_when_the_main_encoder_loads_timms_hub(tmp_path):
    """With `model.pretrained_from_hub` on, a Table 1 row whose backbone has no hub weights (CSWin, DINO) turns it
    off and says it starts from random init; one with hub weights keeps it; a row with its own file reads the file."""
    file = tmp_path / "resnet18_imagenet.pth"  # named, never read: the runs are only validated
    params = parse_params(
        {
            "model": {"pretrained_from_hub": True},
            "ablations": {"table1_extra": ["dinov3_tiny"], "pretrained": {"resnet18": str(file)}},
        }
    )
    backbones = ("resnet50", "cswin_large", "dinov3_tiny", "resnet18")
    runs = {b: ablation_params(params, f"baseline_{b}").model for b in backbones}
    assert runs["resnet50"].pretrained_from_hub and pretrained_note(params, "baseline_resnet50") is None
    assert (runs["resnet18"].pretrained, runs["resnet18"].pretrained_from_hub) == (file, False)
    for b in ("cswin_large", "dinov3_tiny"):
        assert (runs[b].pretrained, runs[b].pretrained_from_hub) == (None, False)
        note = pretrained_note(params, f"baseline_{b}")
        assert note is not None and f"no weights file nor timm hub weights for {b}" in note and "random init" in note
    for name in TABLE_ABLATIONS["table1"] + ("baseline_dinov3_tiny",):
        ablation_params(params, name)  # validates


def test_a_weights_file_for_an_unknown_backbone_is_refused():
    from stcl.params import ParamsError

    with pytest.raises(ParamsError, match=r"ablations\.pretrained\.resnet9000"):
        parse_params({"ablations": {"pretrained": {"resnet9000": "x.pth"}}}, "p.yaml")


def test_cnn_backbones_are_the_timm_cnn_encoders():
    from stcl.families import FAMILIES

    assert set(CNN_BACKBONES) == {n for f in FAMILIES if f.module == "stcl.models.resnet" for n in f.backbones}


# -- independent runs: one seed stream per run name -------------------------------------------------------------
def test_stage_seed_is_stable_across_processes():
    """A stable hash (sha256), not Python's salted hash(): another interpreter derives the same seed."""
    code = "from stcl.train.seeds import stage_seed; print(stage_seed(0, 'train_ade'))"
    seeds = set()
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seeds.add(int(out.stdout))
    assert seeds == {stage_seed(0, "train_ade")}
    assert stage_seed(0, "train_ade") != stage_seed(0, "train_stcl") != stage_seed(1, "train_stcl")


def _sample_order(job) -> list:
    from stcl.train.loop import _Run

    run = _Run(job, DistContext())
    return [run.plan.global_batch(it) for it in range(job.stage.iters)]


def test_stages_with_equal_params_draw_independently(tmp_path, paths):
    """train_stcl and train_ade with the same section: different sample orders, augmentation seeds and fresh
    weights; the same name twice (or an ablation's own seed_stream) is reproducible."""
    same = {"datasets": [{"name": "vspw"}], "init": None, "stcl": {"enabled": False}, "iters": 6, "batch_size": 2,
            "batch_per_device": 2}
    params = _params(train_stcl=same, train_ade=same)
    assert params.train_stcl == params.train_ade
    stcl = build_job(params, "train_stcl", tmp_path / "a", paths)
    ade = build_job(params, "train_ade", tmp_path / "b", paths)
    again = build_job(params, "train_stcl", tmp_path / "c", paths)
    assert stcl.seed != ade.seed and stcl.seed == again.seed
    assert _sample_order(stcl) != _sample_order(ade) and _sample_order(stcl) == _sample_order(again)
    assert stcl.datasets[0].seed != ade.datasets[0].seed
    head = "decode_head.conv_seg.weight"
    assert not torch.equal(stcl.model.state_dict()[head], ade.model.state_dict()[head])
    assert torch.equal(stcl.model.state_dict()[head], again.model.state_dict()[head])
    nostcl = build_job(ablation_params(params, "train_nostcl"), "train_stcl", tmp_path / "d", paths)
    assert nostcl.seed == stage_seed(params.train.seed, "train_nostcl") != stcl.seed
