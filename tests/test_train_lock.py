"""`stcl.train.lock`: one training per output folder; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from stcl.train.distributed import DistContext
from stcl.train.lock import LOCK_NAME, OutputInUseError, OutputLock, output_lock


def test_second_holder_is_refused_naming_the_first(tmp_path) -> None:
    first = OutputLock(tmp_path / "out").acquire()
    record = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    with pytest.raises(OutputInUseError) as info:
        OutputLock(tmp_path / "out").acquire()  # a second open file description: flock conflicts in-process too
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'out' / LOCK_NAME}: output folder in use by stcl train (pid {os.getpid()}")
    assert len(message.splitlines()) == 1
    first.release()
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    OutputLock(tmp_path / "out").acquire().release()  # free again


def test_lock_of_a_dead_process_is_taken_over(tmp_path, capsys) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 0.0}))
    with output_lock(folder, DistContext()) as lock:
        assert lock is not None and lock.stale_holder["pid"] == pid
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock of pid {pid} on host {socket.gethostname()}" in capsys.readouterr().out
    assert not (folder / LOCK_NAME).exists()


def test_output_lock_is_released_when_the_body_fails(tmp_path) -> None:
    with pytest.raises(RuntimeError), output_lock(tmp_path, DistContext()):
        raise RuntimeError("training failed")
    assert not (tmp_path / LOCK_NAME).exists()


def test_torchrun_ranks_agree_on_the_lock(tmp_path) -> None:
    """Rank 0 alone takes the lock; when it cannot, every rank stops (no rank left waiting in a collective)."""
    import torch.multiprocessing as mp
    from test_train_loop import _free_port

    import _train_fixtures as fx

    out = tmp_path / "out"
    mp.spawn(fx.lock_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    assert [(out / f"rank{r}.txt").read_text() for r in range(2)] == ["held True", "held False"]
    held = OutputLock(out).acquire()
    mp.spawn(fx.lock_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    outcomes = [(out / f"rank{r}.txt").read_text() for r in range(2)]
    assert all(o.startswith("refused ") and f"(pid {os.getpid()} on host" in o for o in outcomes), outcomes
    held.release()
