"""`stcl train` on the embedded synthetic data with the real model, datasets and losses (tiny iterations)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from _process_fixtures import wait_for
from _weights_fixtures import model_file

from stcl.cli import main
from stcl.exit_codes import EXIT_PREEMPTED
from stcl.hold import ENV as HOLD_ENV
from stcl.models.checkpoints import load_model
from stcl.params import TRAIN_STAGES, load_params
from stcl.train.state import CheckpointManager


def _write_params(folder: Path, iters: int, **stage_overrides) -> Path:
    data = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    for stage in TRAIN_STAGES:
        data[stage].update(iters=iters, checkpoint_every=2, log_every=1, **stage_overrides)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def workspace(module_tmp):
    """A folder with data/ (stcl synth) and prep/ (stcl prepare), no results/: every path is an argument."""
    root = module_tmp("train_ws")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    _write_params(root, iters=3)
    assert main(["synth", "--out", "data"]) == 0
    assert main(["prepare", "--out", "prep"]) == 0
    yield root
    mp.undo()


COCO_PRE = Path("models/coco-pre/model.pt")
PRETRAIN = ["train", "--stage", "pretrain_coco", "--device", "cpu", "--coco-semantic", "prep/coco_semantic",
            "--out", "models/coco-pre"]
INIT = ["--init", str(COCO_PRE)]


@pytest.fixture(scope="module")
def coco_pre(workspace) -> Path:
    """pretrain_coco trained for 3 iterations (COCO's 133-class space)."""
    assert main(PRETRAIN) == 0
    return COCO_PRE


def test_pretrain_writes_a_coco_space_model(coco_pre) -> None:
    _, meta = load_model(coco_pre)
    assert meta["num_classes"] == 133 and meta["label_space"] == "coco" and meta["proj_dim"] is None
    assert meta["extra"]["stage"] == "pretrain_coco"


def test_finetune_from_coco_pre_reinitialises_the_classifier(coco_pre) -> None:
    assert main(["train", "--stage", "train_stcl", "--device", "cpu", *INIT, "--out", "models/stcl"]) == 0
    out = Path("models/stcl")
    metrics = json.loads((out / "train_metrics.json").read_text())
    init = metrics["init"]
    assert init["source"] == str(coco_pre) and init["loaded"] > 100
    assert "decode_head.conv_seg.weight" in init["mismatched"]  # 133 → 124 classes: re-initialised
    assert any(k.startswith("projection.") for k in init["missing"])  # the STCL head is new
    assert metrics["iterations"] == 3 and set(metrics["datasets"]) == {"vspw"}
    coco, _ = load_model(coco_pre)
    vspw, meta = load_model(out / "model.pt")
    assert meta["num_classes"] == 124 and meta["proj_dim"] == load_params("params.yaml").train_stcl.stcl.dim
    key = "backbone.model.conv1.weight"  # started from COCO-pre, then moved by 3 small steps
    assert 0 < (vspw.state_dict()[key] - coco.state_dict()[key]).abs().max() < 0.05
    state = torch.load(out / "state" / "iter_00000003.pt", weights_only=True)
    assert state["iteration"] == 3 and state["data"]["cursors"] == [12]
    assert {"loss", "lr", "ce", "aux", "stcl"} <= {p.stem for p in (out / "dvclive/plots/metrics/train").glob("*.tsv")}


def test_rerun_retrains_a_finished_stage_and_restart_clears_state(coco_pre, capsys) -> None:
    capsys.readouterr()
    assert main(PRETRAIN) == 0
    out = capsys.readouterr().out
    assert "holds a finished run whose model.pt was written (a rerun retrains); starting afresh" in out and "resuming" not in out
    assert main([*PRETRAIN, "--restart"]) == 0
    assert "starting afresh" not in capsys.readouterr().out  # --restart cleared the state first


def test_mixed_image_and_clip_stage(coco_pre) -> None:
    assert main(["train", "--stage", "train_ade", "--device", "cpu", *INIT, "--out", "results/ade"]) == 0
    state = torch.load("results/ade/state/iter_00000003.pt", weights_only=True)
    assert len(state["data"]["cursors"]) == 2 and sum(state["data"]["cursors"]) == 3 * 4
    assert json.loads(Path("results/ade/train_metrics.json").read_text())["datasets"]["ade"]["samples"] == 40


def test_missing_init_is_a_one_line_error(workspace, capsys) -> None:
    argv = ["train", "--stage", "train_student", "--device", "cpu", "--out", "models/student", "--pseudo", "nowhere"]
    assert main([*argv, "--init", "missing/model.pt"]) == 1
    err = capsys.readouterr().err
    assert "missing/model.pt: init weights of stage 'train_student'" in err and "Traceback" not in err
    assert main(argv) == 1  # no --init for a stage with `init`: named, one line
    err = capsys.readouterr().err
    assert "--init" in err and len(err.strip().splitlines()) == 1


def test_missing_dataset_path_is_named(workspace, capsys) -> None:
    """pretrain_coco mixes COCO: without --coco-semantic the error names the argument (no hidden default)."""
    assert main(["train", "--stage", "pretrain_coco", "--device", "cpu", "--out", "models/x"]) == 1
    err = capsys.readouterr().err
    assert "--coco-semantic" in err and "Traceback" not in err


def test_init_of_another_backbone_is_a_one_line_error(workspace, capsys) -> None:
    """A model file of another backbone as --init is refused (strict), not half-loaded with a log line."""
    from stcl.params import ModelParams

    other = ModelParams(backbone="swin_mini", channels=8, aux_channels=8)
    path = model_file(Path("other_backbone.pt"), model_params=other)
    argv = ["train", "--stage", "train_student", "--device", "cpu", "--out", "models/student"]
    assert main([*argv, "--pseudo", "nowhere", "--init", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "other_backbone.pt: holds a swin backbone" in err and "Traceback" not in err
    assert not Path("models/student/model.pt").exists()


@pytest.mark.slow
def test_default_tiny_stage_learns(tmp_path, monkeypatch) -> None:
    """The default params (300 iterations, resnet18, 64² crops) lower the loss of train_stcl from scratch."""
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    data["train_stcl"]["init"] = None
    Path("params.yaml").write_text(yaml.safe_dump(data))
    assert main(["synth", "--out", "data"]) == 0
    assert main(["train", "--stage", "train_stcl", "--device", "cpu", "--out", "results/models/train_stcl"]) == 0
    m = json.loads(Path("results/models/train_stcl/train_metrics.json").read_text())
    assert m["iterations"] == 300 and m["final_window_loss"] < 0.6 * m["first_loss"]


def _launch(workspace: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stcl", "train", "--device", "cpu", *args],
        cwd=workspace,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_cli_kill_9_then_rerun_is_bit_identical(workspace, tmp_path) -> None:
    """The real stage (resnet18 UperNet + STCL, clip data, workers=0) killed with SIGKILL after its first
    checkpoint, then the same command again: the final weights equal an uninterrupted run's bit for bit."""
    params = _write_params(tmp_path, iters=8, init=None)
    common = ["--stage", "train_stcl", "--params", str(params)]
    ref = _launch(workspace, *common, "--out", str(tmp_path / "ref"))
    assert ref.wait(timeout=600) == 0, ref.stderr.read()
    out = tmp_path / "killed"
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)  # the run stops after its first checkpoint until killed (stcl.hold): it cannot finish first
    proc = _launch(workspace, *common, "--out", str(out), env={HOLD_ENV: f"train.checkpoint.2={fifo}"})
    wait_for((out / "state" / "iter_00000002.pt").exists, proc, "the first checkpoint")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (out / "model.pt").exists()
    again = _launch(workspace, *common, "--out", str(out))
    assert again.wait(timeout=600) == 0, again.stderr.read()
    a = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_cli_sigterm_checkpoints_and_exits_75(workspace, tmp_path) -> None:
    """SIGTERM while the run waits after its first checkpoint (stcl.hold): the wait ends, iteration 3 runs,
    its checkpoint is written and the command exits 75."""
    params = _write_params(tmp_path, iters=200, init=None)
    out = tmp_path / "pre"
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    proc = _launch(workspace, "--stage", "train_stcl", "--params", str(params), "--out", str(out),
                   env={HOLD_ENV: f"train.checkpoint.2={fifo}"})
    wait_for((out / "state" / "iter_00000002.pt").exists, proc, "the first checkpoint")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == EXIT_PREEMPTED, proc.stderr.read()
    assert [i for i, _ in CheckpointManager(out / "state").list()] == [2, 3] and not (out / "model.pt").exists()
    assert torch.load(CheckpointManager(out / "state").latest(), weights_only=True)["iteration"] == 3
