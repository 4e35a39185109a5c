"""One workflow run at a time per repository: a Snakemake run holds DVC's own repository lock.

Snakemake and DVC both run the chain's `stcl` commands on the same ``data/`` and ``results/``; neither
knows the other's lock, and ``dvc repro`` removes a stage's outputs *before* its command runs (or restores
them from its run cache without running it at all), so a check inside the `stcl` commands would come too
late. The lock is therefore taken where both tools look before they touch anything:

* DVC holds ``.dvc/tmp/lock`` (``fcntl.flock``, through zc.lockfile) for the whole of ``dvc repro``, except
  while a stage's command runs; then ``.dvc/tmp/rwlock`` lists that command with the pid of the ``dvc``
  process.
* The Snakefile's ``onstart`` calls `hold_for_snakemake`: it takes the same ``flock`` on ``.dvc/tmp/lock``
  and keeps it until Snakemake exits (kill -9 included: the kernel drops a ``flock`` with its process).
  A ``dvc repro`` started meanwhile stops at once with DVC's "Unable to acquire lock" (its exit 255) before
  it changes a file; the lock file names the Snakemake run (pid, command, since when).
* When DVC holds the lock, or ``.dvc/tmp/rwlock`` lists a live ``dvc`` process, `hold_for_snakemake`
  raises `RepositoryInUseError` naming that process (pid, command, since when); the Snakefile prints it
  and Snakemake exits 69 before any job starts.

Snakemake's jobs run inside the run that holds the lock and never take it, so they run in parallel as
before; two Snakemake runs in one folder are Snakemake's own business (``.snakemake/locks``). A folder
without ``.dvc`` has nothing to guard against. Dry runs (``-n``) take no lock (``onstart`` runs only for
real runs).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from stcl.exit_codes import EXIT_UNAVAILABLE, UnavailableError

__all__ = ["DVC_LOCK", "DVC_RWLOCK", "EXIT_UNAVAILABLE", "RepositoryInUseError", "hold_for_snakemake", "pid_alive"]

DVC_LOCK = Path(".dvc/tmp/lock")
DVC_RWLOCK = Path(".dvc/tmp/rwlock")

_held: list[int] = []  # the lock's descriptor, kept open for the life of the Snakemake process


class RepositoryInUseError(UnavailableError):
    """Another workflow run (a `dvc` process) works in this repository (one line; Snakemake exits 69)."""


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(pid: int) -> str:
    """``pid N, `command line`, since YYYY-mm-dd HH:MM:SS`` from /proc (what is known of it)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in argv)
    except OSError:
        command = "?"
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(boot + ticks / os.sysconf("SC_CLK_TCK")))
    except (OSError, ValueError, IndexError, StopIteration):
        since = "?"
    return f"pid {pid}, `{command}`, since {since}"


def _lock_pid(path: Path) -> int | None:
    """The pid zc.lockfile wrote into DVC's lock file (" <pid>"), if any."""
    try:
        first = path.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return None
    return int(first[0]) if first and first[0].isdigit() else None


def _dvc_stage_running(root: Path) -> str | None:
    """A live `dvc` process that ``.dvc/tmp/rwlock`` lists (a stage command running), described; else None."""
    try:
        lock = json.loads((root / DVC_RWLOCK).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return None
    entries = list(lock.get("write", {}).items()) + [(p, i) for p, infos in lock.get("read", {}).items() for i in infos]
    for path, info in entries:
        pid = info.get("pid") if isinstance(info, dict) else None
        if isinstance(pid, int) and pid_alive(pid):
            return f"{_describe(pid)}, running `{info.get('cmd', '?')}` on {path}"
    return None


def try_flock(path: str | Path) -> int | None:
    """Open ``path`` (created 0644 if missing) and take an exclusive, non-blocking flock on it: the open file
    descriptor, or None when another process holds the lock (other OS errors propagate)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        return None
    return fd


def hold_for_snakemake(root: str | Path = ".") -> None:
    """Take DVC's repository lock of `root` for the rest of this (Snakemake) process; no-op without ``.dvc``.

    Raises:
        RepositoryInUseError: a `dvc` process holds the lock or runs a stage command (one line naming it).
    """
    root = Path(root)
    if _held or not (root / ".dvc").is_dir():
        return
    path = root / DVC_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = try_flock(path)
    if fd is None:
        pid = _lock_pid(path)
        holder = _describe(pid) if pid is not None else "a process that recorded no pid"
        raise RepositoryInUseError(
            f"{DVC_LOCK}: a DVC command holds this repository ({holder}); wait for it to finish, then run "
            "Snakemake again"
        ) from None
    running = _dvc_stage_running(root)  # read while holding the lock: DVC edits it only under the lock
    if running is not None:
        os.close(fd)
        raise RepositoryInUseError(
            f"{DVC_RWLOCK}: `dvc repro` is running a stage in this repository ({running}); wait for it to finish, "
            "then run Snakemake again"
        )
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    record = f" {os.getpid()}\nsnakemake run on {socket.gethostname()}: `{' '.join(sys.argv)}`, since {since}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode(), 0)
    _held.append(fd)
