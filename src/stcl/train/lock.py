"""One `stcl train` per output folder: ``<out>/train.lock``, held with ``flock`` and naming its holder.

Two trainings writing the same ``--out`` would overwrite (and clean) each other's checkpoints. The first
process takes an exclusive ``fcntl.flock`` on ``<out>/train.lock`` and writes its pid, host, start time and
command line into it; a second process cannot take the lock and stops with one line naming the holder.

The lock dies with its process (the kernel releases a ``flock`` on exit, kill -9 included), so a lock file
left by a dead process is *stale*: the next run takes it over and says whose it was. The file is removed
when the holder finishes. On file systems without working ``flock`` (some NFS setups) the lock is not
enforced; the pid/host record is still written so that a user can see who last trained there.

In a torchrun job only rank 0 takes the lock; every rank learns whether it got it (one collective) and all
stop together when it did not.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stcl.runlock import try_flock
from stcl.train.distributed import DistContext, all_gather_objects

__all__ = ["LOCK_NAME", "OutputInUseError", "OutputLock", "output_lock"]

LOCK_NAME = "train.lock"


class OutputInUseError(ValueError):
    """Another live process holds the output folder's lock (a user error: exit 1, one line)."""


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (no holder recorded yet)"
    since = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {when}"


class OutputLock:
    """The exclusive lock of one training output folder.

    Args:
        out_dir: the stage's output folder (created if missing).

    Use `acquire` / `release` or `output_lock`. `stale_holder` is the record of a dead process whose lock
    file this one took over (None when the file was absent or unrecorded).
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None
        self.stale_holder: dict[str, Any] | None = None

    def acquire(self) -> "OutputLock":
        """Take the lock or raise OutputInUseError naming the lock file and its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = try_flock(self.path)
            if fd is None:
                raise OutputInUseError(
                    f"{self.path}: output folder in use by stcl train ({_describe(_read_holder(self.path))}); "
                    "wait for it to finish or stop it (Ctrl-C writes a checkpoint), or pass another --out"
                ) from None
            # the holder may have removed the file between our open and flock: then retry on the new file
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_holder(self.path)
        self.stale_holder = previous or None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (no-op if not held)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked: a waiting process retries on a fresh file
        os.close(self._fd)
        self._fd = None


@contextmanager
def output_lock(out_dir: str | Path, ctx: DistContext) -> Iterator[OutputLock | None]:
    """Hold ``<out_dir>/train.lock`` for the body (rank 0 takes it; every rank fails together if it cannot).

    Yields the lock on rank 0, None elsewhere. Prints one line when a stale lock is taken over.

    Raises:
        OutputInUseError: another live process holds the lock (on every rank).
    """
    lock, error = None, None
    if ctx.is_main:
        try:
            lock = OutputLock(out_dir).acquire()
        except OutputInUseError as err:
            error = str(err)
        else:
            if lock.stale_holder is not None:
                print(
                    f"stcl train: {lock.path}: taking over the stale lock of {_describe(lock.stale_holder)} "
                    "(that process is gone)",
                    flush=True,
                )
    error = all_gather_objects(error, ctx)[0]  # rank 0's outcome decides for all
    if error is not None:
        raise OutputInUseError(error)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
