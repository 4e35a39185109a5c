from pathlib import Path

import pytest
import yaml

from stcl.params import TRAIN_STAGES, Params, ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_is_the_default():
    assert load_params(ROOT / "params.yaml") == Params()


def _write(tmp_path, data):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda d: d["train_stcl"].__setitem__("optimizer", {"lr": -1.0}), "train_stcl.optimizer.lr"),
        (lambda d: d["train"]["optimizer"].__setitem__("lr", -1.0), "train.optimizer.lr"),
        (lambda d: d["augment"].__setitem__("crop_size", [-64, 64]), "augment.crop_size.0"),
        (lambda d: d["pseudo_label"].__setitem__("threshold", 1.5), "pseudo_label.threshold"),
        (lambda d: d["model"].__setitem__("chanels", 3), "model.chanels: unknown key"),
        (lambda d: d["train_ade"].__setitem__("iters", "many"), "train_ade.iters"),
        (lambda d: d["clips"].__setitem__("reference_offsets", [0, -3]), "clips"),
        (lambda d: d["train_stcl"].__setitem__("batch_size", 6), "train_stcl"),
    ],
)
def test_bad_values_name_the_key_path(tmp_path, edit, needle):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(data)
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    assert needle in str(err.value)
    assert str(tmp_path / "params.yaml") in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_paper_preset_is_one_switch_away(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "stcl", "params", "--preset", "paper"], capture_output=True, text=True, check=True
    ).stdout
    path = tmp_path / "params.yaml"
    path.write_text(out)
    paper = load_params(path)
    assert paper.model.backbone == "swin_large_patch4_window12_384"
    assert paper.augment.crop_size == (768, 768)
    assert paper.train_stcl.optimizer.lr == 7e-5 and paper.train_stcl.optimizer.warmup_iters == 1500
    assert paper.train_stcl.iters == 20000 and paper.train_stcl.batch_size == 16
    assert paper.train_stcl.stcl.dim == 512 and paper.train_stcl.stcl.weight == 0.2
    assert paper.infer.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    # every key is written out, so DVC can track each one
    assert set(yaml.safe_load(out)) == set(Params.model_fields)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda d: d["infer"].__setitem__("models", []), "infer.models"),
        (lambda d: d["teacher"].__setitem__("members", []), "teacher.members"),
        (lambda d: d["model"].__setitem__("backbone", "resnet9000"), "model.backbone"),
        (lambda d: d["data"].__setitem__("synthetic", "yes"), "data.synthetic"),
        (lambda d: d["infer"].__setitem__("flip", "true"), "infer.flip"),
    ],
)
def test_values_that_used_to_fail_later_fail_at_validation(tmp_path, edit, needle):
    """Caught by `stcl params` (and the Snakefile), not deep inside `stcl infer` / `stcl train`."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(data)
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    assert f"  {needle}: " in str(err.value)


def test_every_fault_is_listed_one_line_each(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["infer"]["models"] = []
    data["model"]["backbone"] = "resnet9000"
    data["data"]["synthetic"] = "yes"
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    lines = str(err.value).splitlines()
    assert lines[0].endswith("invalid params (3 problem(s))") and len(lines) == 4


def test_empty_params_file_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# nothing here\n")
    with pytest.raises(ParamsError, match="params file is empty"):
        load_params(path)
    path.write_text("{}\n")  # an empty mapping: every default
    assert load_params(path) == Params()


def test_backbone_names_are_the_encoder_table():
    from stcl.models.encoders import encoder_names
    from stcl.params import BACKBONES

    assert set(BACKBONES) == set(encoder_names())


def test_stages_inherit_the_shared_train_section(tmp_path):
    """params.yaml states shared settings once (`train:`); a stage's own keys win, mappings merge."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert "optimizer" not in data["train_stcl"] and "iters" not in data["train_stcl"]
    data["train"]["optimizer"]["lr"] = 1e-3
    data["train_ade"]["optimizer"] = {"weight_decay": 0.05}
    params = load_params(_write(tmp_path, data))
    assert all(params.stage(s).optimizer.lr == 1e-3 for s in TRAIN_STAGES)
    assert params.train_ade.optimizer.weight_decay == 0.05 and params.train_stcl.optimizer.weight_decay == 0.01
    assert params.train_student.iters == 400 and params.train_stcl.iters == 300
    assert params.pretrain_coco.stcl.enabled is False and params.train_stcl.stcl.enabled is True


# -- printed params files: every preset and every ablation reads back as itself ----------------------------------
def _printed(capsys, *argv) -> str:
    from stcl.cli import main

    capsys.readouterr()
    assert main(["params", *argv]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("preset", ["tiny", "paper", "dinov2", "dinov3"])
def test_every_preset_round_trips(tmp_path, capsys, preset):
    """`stcl params --preset X > f; stcl params --params f` is `stcl params --preset X` (the paper's student
    kept its 20,000 iterations only when the printed file stated them)."""
    from stcl.presets import preset_params

    out = _printed(capsys, "--preset", preset)
    path = tmp_path / f"{preset}.yaml"
    path.write_text(out)
    assert load_params(path) == preset_params(preset)
    body = "".join(line for line in out.splitlines(keepends=True) if not line.startswith("#"))
    assert _printed(capsys, "--params", str(path)) == body


def test_a_printed_file_states_every_key_of_every_stage(capsys):
    """No stage value of a printed file falls back to `train:` or to a stage default (`STAGE_RECIPES`)."""
    from stcl.params import TRAIN_STAGES, OptimizerParams, StclParams, TrainStageParams

    data = yaml.safe_load(_printed(capsys, "--preset", "paper"))
    for stage in TRAIN_STAGES:
        assert set(data[stage]) == set(TrainStageParams.model_fields), stage
        assert set(data[stage]["optimizer"]) == set(OptimizerParams.model_fields), stage
        assert set(data[stage]["stcl"]) == set(StclParams.model_fields), stage
    assert data["train_student"]["iters"] == 20000 and data["pretrain_coco"]["iters"] == 80000


def test_committed_params_yaml_needs_no_stage_default(monkeypatch):
    """params.yaml states each stage's own recipe (datasets, init, ...): without the stage defaults it is the same."""
    from stcl import params as params_module

    default = Params()
    for stage in params_module.STAGE_RECIPES:
        monkeypatch.setitem(params_module.STAGE_RECIPES, stage, {})
    assert load_params(ROOT / "params.yaml") == default


@pytest.mark.parametrize("name", ["baseline_resnet50", "train_coco", "train_nostcl", "stcl_d256_t0.07", "train_stcl_shuffled"])
def test_ablation_files_round_trip(tmp_path, capsys, name):
    """`stcl ablation NAME --out f` of the paper preset: f reads back as that ablation's params."""
    from stcl.ablations import ablation_params
    from stcl.cli import main
    from stcl.presets import preset_params

    base = tmp_path / "paper.yaml"
    base.write_text(_printed(capsys, "--preset", "paper"))
    out = tmp_path / name / "params.yaml"
    assert main(["ablation", name, "--params", str(base), "--out", str(out)]) == 0
    back = load_params(out)
    assert back == ablation_params(preset_params("paper"), name)
    assert back.train_stcl.iters == 20000 and back.train_stcl.seed_stream == name
