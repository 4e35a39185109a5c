"""Resume checkpoints: atomic files, weights_only loading, RNG round trip, pruning, clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from stcl.train.state import STATE_FORMAT, CheckpointManager, capture_rng, restore_rng


def _draws() -> tuple[float, float, float]:
    return float(torch.rand(1)), float(np.random.rand()), random.random()


def test_rng_round_trip_survives_weights_only_save(tmp_path) -> None:
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    _draws()
    saved = capture_rng()
    torch.save(saved, tmp_path / "rng.pt")
    expected = _draws()
    _draws()  # move every stream on
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draws() == expected


def test_save_list_prune_and_load(tmp_path) -> None:
    mgr = CheckpointManager(tmp_path / "state", keep=2)
    assert mgr.latest() is None
    for it in (5, 10, 15):
        mgr.save({"iteration": it, "model": {"w": torch.full((2,), float(it))}}, it)
    assert [i for i, _ in mgr.list()] == [10, 15]
    state = mgr.load(mgr.latest())
    assert state["format"] == STATE_FORMAT and state["iteration"] == 15
    assert torch.equal(state["model"]["w"], torch.full((2,), 15.0))
    assert not list((tmp_path / "state").glob("*.tmp"))


def test_partial_writes_are_ignored(tmp_path) -> None:
    mgr = CheckpointManager(tmp_path / "state")
    mgr.save({"iteration": 3}, 3)
    (tmp_path / "state" / ".iter_00000006.pt.999.tmp").write_bytes(b"half a file")
    assert mgr.latest() == mgr.path_for(3)


def test_corrupt_checkpoint_error_names_the_file(tmp_path) -> None:
    mgr = CheckpointManager(tmp_path / "state")
    path = mgr.path_for(7)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="iter_00000007.pt: cannot read training checkpoint"):
        mgr.load(path)
    torch.save({"format": "other"}, path)
    with pytest.raises(ValueError, match="not a stcl-train-state/1 checkpoint"):
        mgr.load(path)


def test_keep_must_be_positive(tmp_path) -> None:
    with pytest.raises(ValueError, match="keep"):
        CheckpointManager(tmp_path, keep=0)
