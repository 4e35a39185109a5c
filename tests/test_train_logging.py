"""DVC plot files of the training logger and the torchrun environment parsing."""

from __future__ import annotations

import json

import pytest

from stcl.train.distributed import init_distributed
from stcl.train.logging import TrainLogger, truncate_dvclive


def _rows(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_logger_writes_dvclive_layout_and_resume_drops_later_rows(tmp_path) -> None:
    """A resume from the checkpoint at 20 keeps the row of step 20 (iterations 11-20 are in the checkpoint)."""
    log = TrainLogger(tmp_path, enabled=True, total_iters=30, start_iter=0, desc="t")
    for step in (10, 20, 30):
        log.log(step, {"loss": 1.0 / step, "lr": 0.1})
    log.close()
    tsv = tmp_path / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv"
    assert _rows(tsv) == [["step", "loss"], ["10", "0.1"], ["20", "0.05"], ["30", repr(1 / 30)]]
    summary = json.loads((tmp_path / "dvclive" / "metrics.json").read_text())
    assert summary == {"train": {"loss": 1 / 30, "lr": 0.1}, "step": 30}

    resumed = TrainLogger(tmp_path, enabled=True, total_iters=30, start_iter=20, desc="t")  # checkpoint at 20
    resumed.log(30, {"loss": 0.5, "lr": 0.1})
    resumed.close()
    assert _rows(tsv) == [["step", "loss"], ["10", "0.1"], ["20", "0.05"], ["30", "0.5"]]

    TrainLogger(tmp_path, enabled=True, total_iters=30, start_iter=0, desc="t").close()  # a fresh run
    assert not tsv.exists()


def test_disabled_logger_writes_nothing(tmp_path) -> None:
    log = TrainLogger(tmp_path, enabled=False, total_iters=3, start_iter=0, desc="t")
    log.update(1, 0.5, 0.1)
    log.log(1, {"loss": 0.5})
    log.close()
    assert not (tmp_path / "dvclive").exists()


def test_truncate_ignores_missing_folder(tmp_path) -> None:
    truncate_dvclive(tmp_path / "nothing", 5)  # no error, and nothing created
    assert not (tmp_path / "nothing").exists()


def test_torchrun_environment(monkeypatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK=2 is outside"):
        init_distributed("cpu")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK must be an integer"):
        init_distributed("cpu")
    with pytest.raises(ValueError, match="device must be"):
        init_distributed("tpu")
