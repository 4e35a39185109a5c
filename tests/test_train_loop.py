"""The training loop on a toy model: learning, accumulation, exact resume after kill -9, preemption, NaN stop."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stcl.train.distributed import DistContext
from stcl.train.loop import NonFiniteLossError, train
from stcl.train.state import CheckpointManager

sys.path.insert(0, str(Path(__file__).parent))
import _train_fixtures as fx  # noqa: E402

TESTS = Path(__file__).parent


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _run_script(out: Path, kill_at: int = 0, sig: str = "SIGKILL") -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    proc = subprocess.run(
        [sys.executable, str(TESTS / "_train_fixtures.py"), str(out), str(kill_at), sig],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode


def test_toy_model_learns_and_writes_outputs(tmp_path) -> None:
    result = train(fx.toy_job(tmp_path, fx.toy_stage(iters=30, checkpoint_every=10)), DistContext())
    m = result.metrics
    assert not result.preempted and result.iteration == 30
    assert m["final_window_loss"] < 0.7 * m["first_loss"]
    assert (tmp_path / "model.pt").is_file()
    on_disk = json.loads((tmp_path / "train_metrics.json").read_text())
    assert on_disk["iterations"] == 30 and on_disk["first_loss"] == pytest.approx(m["first_loss"])
    loss_rows = (tmp_path / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert loss_rows[0].split("\t") == ["step", "loss"] and [r.split("\t")[0] for r in loss_rows[1:]] == [
        "4",
        "8",
        "12",
        "16",
        "20",
        "24",
        "28",
        "30",
    ]
    assert (tmp_path / "dvclive" / "plots" / "metrics" / "train" / "lr.tsv").is_file()
    assert [i for i, _ in CheckpointManager(tmp_path / "state").list()] == [20, 30]
    state = torch.load(tmp_path / "state" / "iter_00000030.pt", weights_only=True)
    assert set(state) >= {"model", "optimizer", "scheduler", "scaler", "rng", "data", "iteration", "fingerprint"}


def test_accumulation_equals_one_big_batch(tmp_path) -> None:
    # no dropout: its masks depend on the micro-batch split
    big = fx.toy_job(tmp_path / "big", fx.toy_stage(batch_per_device=4), dropout=0.0)
    small = fx.toy_job(tmp_path / "small", fx.toy_stage(batch_per_device=2), dropout=0.0)
    for job in (big, small):
        train(job, DistContext())
    for (k, a), b in zip(big.model.state_dict().items(), small.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.slow
def test_kill_9_then_rerun_is_bit_identical(tmp_path) -> None:
    """A real SIGKILL after iteration 7 (checkpoint at 5), then the same command again."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert _run_script(ref) == 0
    assert _run_script(killed, kill_at=7, sig="SIGKILL") == -signal.SIGKILL
    assert not (killed / "model.pt").exists()
    assert [i for i, _ in CheckpointManager(killed / "state").list()] == [5]
    assert _run_script(killed) == 0  # resumes from iteration 5
    _assert_identical(_weights(ref / "model.pt"), _weights(killed / "model.pt"))
    steps = (killed / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text().split()[2::2]
    assert steps == ["4", "8", "12"]  # rows logged after the checkpoint were dropped, none duplicated


def test_sigterm_checkpoints_then_rerun_is_bit_identical(tmp_path) -> None:
    ref, pre = tmp_path / "ref", tmp_path / "pre"
    train(fx.toy_job(ref), DistContext())

    def sigterm_at_3(it: int) -> None:
        if it == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    result = train(fx.toy_job(pre), DistContext(), callbacks=[sigterm_at_3])
    # the flag is honoured at the end of the next iteration, which is checkpointed
    assert result.preempted and result.iteration == 4
    assert [i for i, _ in CheckpointManager(pre / "state").list()] == [4]
    assert not (pre / "model.pt").exists()
    result = train(fx.toy_job(pre), DistContext())
    assert result.iteration == 12 and not result.preempted
    _assert_identical(_weights(ref / "model.pt"), _weights(pre / "model.pt"))


def test_sigusr1_in_process_returns_preempted(tmp_path) -> None:
    def cb(it: int) -> None:
        if it == 2:
            os.kill(os.getpid(), signal.SIGUSR1)

    result = train(fx.toy_job(tmp_path), DistContext(), callbacks=[cb])
    assert result.preempted and result.iteration == 3
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handlers restored


def test_nan_loss_stops_with_iteration_and_keeps_last_checkpoint(tmp_path) -> None:
    calls = []

    def nan_at_8(out, labels, use_stcl):
        calls.append(1)
        loss, parts = fx.toy_loss(out, labels, use_stcl)
        return (loss * math.nan if len(calls) == 8 else loss), parts

    with pytest.raises(NonFiniteLossError, match=r"loss is nan at iteration 8 .*iter_00000005\.pt"):
        train(fx.toy_job(tmp_path, loss_fn=nan_at_8), DistContext())
    mgr = CheckpointManager(tmp_path / "state")
    assert [i for i, _ in mgr.list()] == [5]
    assert mgr.load(mgr.latest())["iteration"] == 5
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize("workflow_removed_model", [False, True])
def test_finished_run_is_retrained_not_resumed(tmp_path, workflow_removed_model) -> None:
    """A run whose model.pt was written is trained again, also when model.pt is gone (Snakemake and DVC
    remove a job's outputs before they rerun it)."""
    first = train(fx.toy_job(tmp_path, fx.toy_stage(iters=5)), DistContext())
    if workflow_removed_model:
        (tmp_path / "model.pt").unlink()
    ran: list[int] = []
    again = train(fx.toy_job(tmp_path, fx.toy_stage(iters=5)), DistContext(), callbacks=[ran.append])
    assert ran == [1, 2, 3, 4, 5]  # a full fresh run, not a no-op resume
    assert again.metrics["first_loss"] == first.metrics["first_loss"]


def test_finished_run_whose_model_was_not_written_is_not_retrained(tmp_path, capsys) -> None:
    """The final checkpoint is on disk but writing model.pt fails (a full disk): the same command again
    writes model.pt from that checkpoint, without training a single iteration."""
    job = fx.toy_job(tmp_path, fx.toy_stage(iters=5))

    def full_disk(path: Path, model: torch.nn.Module) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    job.save_model = full_disk
    with pytest.raises(OSError):
        train(job, DistContext())
    ckpts = CheckpointManager(tmp_path / "state")
    final = ckpts.load(ckpts.latest())
    assert final["iteration"] == 5 and not (tmp_path / "model.pt").exists()
    losses = (tmp_path / "dvclive/plots/metrics/train/loss.tsv").read_text()
    capsys.readouterr()

    ran: list[int] = []
    again = train(fx.toy_job(tmp_path, fx.toy_stage(iters=5)), DistContext(), callbacks=[ran.append])
    out = capsys.readouterr().out
    assert ran == [] and again.iteration == 5 and not again.preempted
    assert "is the final checkpoint of this run (5/5 iterations) and its outputs were never written" in out
    assert "starting afresh" not in out
    _assert_identical(_weights(tmp_path / "model.pt"), final["model"])
    assert (tmp_path / "dvclive/plots/metrics/train/loss.tsv").read_text() == losses
    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    assert metrics["iterations"] == 5 and metrics["first_loss"] == final["log"]["first_loss"]

    # Delivered now: the next run is a workflow's rerun (an input changed) and trains again.
    train(fx.toy_job(tmp_path, fx.toy_stage(iters=5)), DistContext(), callbacks=[ran.append])
    assert ran == [1, 2, 3, 4, 5]


def test_checkpoints_of_other_params_are_discarded(tmp_path) -> None:
    train(fx.toy_job(tmp_path, fx.toy_stage(iters=5)), DistContext())
    job = fx.toy_job(tmp_path, fx.toy_stage(iters=6))
    job.fingerprint = "other"
    result = train(job, DistContext())
    assert result.iteration == 6 and result.metrics["first_loss"] is not None
    assert [i for i, _ in CheckpointManager(tmp_path / "state").list()] == [5, 6]  # new run from scratch


def test_image_and_clip_datasets_mix_per_iteration(tmp_path) -> None:
    seen = []

    def loss(out, labels, use_stcl):
        seen.append((labels.shape[1], use_stcl))
        return fx.toy_loss(out, labels, use_stcl)

    stage = fx.toy_stage(
        iters=20, datasets=(fx.DatasetMix(name="vspw"), fx.DatasetMix(name="ade")), stcl=fx.StclParams(enabled=True)
    )
    job = fx.toy_job(tmp_path, stage, loss_fn=loss, datasets=[fx.ToyDataset(frames=3), fx.ToyDataset(frames=1, seed=1)])
    train(job, DistContext())
    assert set(seen) == {(3, True), (1, False)}


def test_clip_datasets_of_one_shape_share_batches(tmp_path) -> None:
    """The student's VSPW and pseudo clips are one combined dataset: the loop's batches hold both."""
    reads: list[int] = []
    batches: list[set[int]] = []

    class Source(fx.ToyDataset):
        def __getitem__(self, index: int) -> dict:
            reads.append(self.seed)
            return super().__getitem__(index)

    def loss(out, labels, use_stcl):
        batches.append(set(reads))  # workers=0: the micro-batch's items were read just before its loss
        reads.clear()
        return fx.toy_loss(out, labels, use_stcl)

    stage = fx.toy_stage(iters=20, datasets=(fx.DatasetMix(name="vspw", weight=2.0), fx.DatasetMix(name="pseudo")))
    job = fx.toy_job(tmp_path, stage, loss_fn=loss, datasets=[Source(frames=3, seed=0), Source(frames=3, seed=1)])
    train(job, DistContext())
    assert len(batches) == 20 and sum(b == {0, 1} for b in batches) >= 10


def test_bad_accumulation_is_a_clear_error(tmp_path) -> None:
    job = fx.toy_job(tmp_path, fx.toy_stage(batch_size=4, batch_per_device=4))
    with pytest.raises(ValueError, match="not a multiple of world_size"):
        train(job, DistContext(world_size=3))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_accumulation(tmp_path) -> None:
    """2 gloo ranks × 2 images vs 1 process × 2 micro-batches of 2: the same global batch of 4 per step.

    Dropout is off (masks would differ with the split) and the toy model has no BatchNorm (batch statistics
    of 2 vs 4 images, and DDP's buffer broadcast, would differ). Then both runs average the same per-micro-
    batch mean losses and must agree up to float summation order.
    """
    import torch.multiprocessing as mp

    kwargs = {"batch_per_device": 2, "iters": 8}
    mp.spawn(fx.ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), kwargs, 0.0), nprocs=2, join=True)
    r0, r1 = _weights(tmp_path / "ddp" / "rank0.pt"), _weights(tmp_path / "ddp" / "rank1.pt")
    _assert_identical(r0, r1)
    single = fx.toy_job(tmp_path / "one", fx.toy_stage(**kwargs), dropout=0.0)
    train(single, DistContext())
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(r0[k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert (tmp_path / "ddp" / "model.pt").is_file() and not (tmp_path / "ddp" / "rank1").exists()


def _child_pids() -> list[int]:
    pids = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        pids += [int(p) for p in children.read_text().split()]
    return pids


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigterm_to_dataloader_workers_too_still_checkpoints(tmp_path) -> None:
    """Slurm signals every process of the job: the loader workers must not die of it."""

    def sigterm_everyone(it: int) -> None:
        if it == 2:
            for pid in _child_pids():
                os.kill(pid, signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)

    result = train(fx.toy_job(tmp_path, fx.toy_stage(workers=1)), DistContext(), callbacks=[sigterm_everyone])
    assert result.preempted and result.iteration == 3
    assert [i for i, _ in CheckpointManager(tmp_path / "state").list()] == [3]


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys) -> None:
    """Checkpoints at 5 and 7 (SIGTERM); iteration 7's file cut short: the rerun warns naming both, resumes
    from 5 and still ends bit-identical to an uninterrupted run."""
    ref, pre = tmp_path / "ref", tmp_path / "pre"
    train(fx.toy_job(ref), DistContext())

    def sigterm_at_6(it: int) -> None:
        if it == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    assert train(fx.toy_job(pre), DistContext(), callbacks=[sigterm_at_6]).iteration == 7
    ckpts = CheckpointManager(pre / "state")
    assert [i for i, _ in ckpts.list()] == [5, 7]
    latest = ckpts.path_for(7)
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # a copy cut short / a failing disk
    capsys.readouterr()
    result = train(fx.toy_job(pre), DistContext())
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warning) == 1
    assert str(latest) in warning[0] and str(ckpts.path_for(5)) in warning[0] and "cannot read" in warning[0]
    assert f"resuming toy from {ckpts.path_for(5)} (iteration 5/12)" in captured.out
    assert result.iteration == 12 and not result.preempted
    _assert_identical(_weights(ref / "model.pt"), _weights(pre / "model.pt"))
    assert (pre / "state" / "iter_00000007.pt.unreadable").is_file()  # kept for inspection, never loaded again


def test_unreadable_only_checkpoint_starts_afresh_with_a_warning(tmp_path, capsys) -> None:
    ckpts = CheckpointManager(tmp_path / "state")
    ckpts.folder.mkdir(parents=True)
    ckpts.path_for(5).write_bytes(b"PK\x03\x04 truncated")
    assert train(fx.toy_job(tmp_path), DistContext()).iteration == 12
    err = capsys.readouterr().err
    assert f"{ckpts.path_for(5)}: cannot read training checkpoint" in err and "starting afresh" in err


@pytest.fixture()
def ctrl_c_enabled():
    """SIGINT as in a terminal, even when pytest itself was started with it ignored (a background job)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_sigint_checkpoints_and_reports_exit_130(tmp_path, ctrl_c_enabled) -> None:
    from stcl.exit_codes import EXIT_INTERRUPTED

    def ctrl_c_at_2(it: int) -> None:
        if it == 2:
            os.kill(os.getpid(), signal.SIGINT)

    result = train(fx.toy_job(tmp_path), DistContext(), callbacks=[ctrl_c_at_2])
    assert result.preempted and result.iteration == 3 and result.stop_signal == signal.SIGINT
    assert result.exit_code == EXIT_INTERRUPTED
    assert [i for i, _ in CheckpointManager(tmp_path / "state").list()] == [3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_second_ctrl_c_stops_at_once(tmp_path, ctrl_c_enabled) -> None:
    def ctrl_c_twice(it: int) -> None:
        if it == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(fx.toy_job(tmp_path), DistContext(), callbacks=[ctrl_c_twice])
    assert CheckpointManager(tmp_path / "state").list() == []  # no checkpoint: the user insisted
