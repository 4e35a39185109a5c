"""Real signals to real `stcl train` / `stcl infer` subprocesses, and two trainings on one output folder."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from _hardening_fixtures import launch, leftovers, make_workspace, write_params
from _process_fixtures import wait_for

from stcl.cli import EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_USER_ERROR
from stcl.data import vspw
from stcl.hold import ENV as HOLD_ENV
from stcl.train.state import CheckpointManager

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(module_tmp) -> Path:
    return make_workspace(module_tmp("signals_ws"))


def _train(out: str, params: str = "params.yaml") -> tuple[str, ...]:
    return ("train", "--stage", "train_stcl", "--params", params, "--out", out, "--device", "cpu")


def test_ctrl_c_during_train_writes_a_checkpoint_and_exits_130(workspace) -> None:
    out = workspace / "ctrl_c"
    fifo = workspace / "hold_ctrl_c"
    os.mkfifo(fifo)  # after its first checkpoint the training waits on this pipe (stcl.hold): Ctrl-C lands there
    proc = launch(workspace, *_train("ctrl_c"), env={HOLD_ENV: f"train.checkpoint.2={fifo}"})
    wait_for(lambda: (out / "state" / "iter_00000002.pt").exists(), proc, "the first checkpoint")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    stdout, stderr = proc.communicate(timeout=300)
    fifo.unlink()
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    ckpts = CheckpointManager(out / "state").list()
    stopped_at = ckpts[-1][0]
    assert [i for i, _ in ckpts] == [2, 3]  # the wait ends, iteration 3 runs and its checkpoint is written
    assert f"stcl train: interrupted; checkpoint at iteration {stopped_at} written, exit 130" in stdout
    assert torch.load(ckpts[-1][1], weights_only=True)["iteration"] == stopped_at
    assert not (out / "model.pt").exists() and not (out / "train.lock").exists()
    assert leftovers(out) == []


def _infer(split: str, out: str) -> tuple[str, ...]:
    return ("infer", "--checkpoint", "m=model.pt", "--root", "data/VSPW_480p", "--split", split, "--output", f"m=m={out}",
            "--device", "cpu")


def _complete_videos(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []


@pytest.mark.parametrize(
    ("sig", "to_group", "code", "line"),
    [
        (signal.SIGINT, True, EXIT_INTERRUPTED, "stcl infer: interrupted (SIGINT); no partial output kept"),
        (
            signal.SIGTERM,
            False,
            EXIT_PREEMPTED,
            "stcl infer: stopped by SIGTERM; no partial output kept; run the same command again to continue (exit 75)",
        ),
    ],
)
def test_signal_during_infer_is_one_line_and_keeps_only_complete_videos(workspace, sig, to_group, code, line) -> None:
    out = workspace / f"pred_{sig.name}"
    first = sorted(vspw.read_split(workspace / "data" / "VSPW_480p", "val"))[0]
    fifo = workspace / f"hold_{sig.name}"
    os.mkfifo(fifo)  # after the first video the command waits on this pipe (stcl.hold): the signal lands there
    proc = launch(workspace, *_infer("val", out.name), env={HOLD_ENV: f"infer.video_done.{first}={fifo}"})
    wait_for(lambda: len(_complete_videos(out)) == 1, proc, "the first video's predictions")
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)  # as `kill PID` / scancel / Slurm preemption
    _, stderr = proc.communicate(timeout=120)
    fifo.unlink()
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines() == [line]
    assert leftovers(out) == []  # no temporary folder left
    assert _complete_videos(out) == [first]
    assert len(list((out / first).glob("*.png"))) == 20
    if sig == signal.SIGTERM:  # the same command again finishes the rest
        again = launch(workspace, *_infer("val", out.name))
        stdout, stderr = again.communicate(timeout=600)
        assert again.returncode == 0, stderr
        assert "1 videos (20 frames," in stdout and "1 already complete" in stdout


def test_second_train_on_the_same_out_is_refused_and_a_stale_lock_is_taken_over(workspace) -> None:
    out = workspace / "locked"
    fifo = workspace / "hold_locked"
    os.mkfifo(fifo)  # the first training waits here after its first checkpoint (stcl.hold) until killed
    first = launch(workspace, *_train("locked"), env={HOLD_ENV: f"train.checkpoint.2={fifo}"})
    wait_for(lambda: (out / "state" / "iter_00000002.pt").exists(), first, "the first checkpoint")
    second = launch(workspace, *_train("locked"))
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == EXIT_USER_ERROR
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stcl train: error: locked/train.lock: output folder in use ")
    assert f"(pid {first.pid} on host " in lines[0]
    assert first.poll() is None  # the first training was not disturbed
    holder = json.loads((out / "train.lock").read_text())
    assert holder["pid"] == first.pid

    first.kill()  # kill -9: no chance to clean up, the lock file stays with a dead pid in it
    first.communicate(timeout=60)
    fifo.unlink()
    assert json.loads((out / "train.lock").read_text())["pid"] == first.pid
    write_params(workspace, "short.yaml", iters=2, checkpoint_every=2)
    third = launch(workspace, *_train("locked", "short.yaml"))
    stdout, stderr = third.communicate(timeout=600)
    assert third.returncode == 0, stderr
    assert f"taking over the stale lock of pid {first.pid} on host" in stdout
    assert (out / "model.pt").is_file() and not (out / "train.lock").exists()
