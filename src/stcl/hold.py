"""A test hook: stop a command at a named point until the test releases it (or signals or kills it).

``STCL_HOLD="<point>=<fifo>"`` makes the command, on reaching ``<point>``, wait until a writer opens the
named pipe ``<fifo>`` and closes it again. A test thus knows where the process stands when it sends a
signal or kills it, whatever the machine's speed: an event, not a wait of fixed length. Unset (always,
outside the tests) it costs one environment lookup.

It never hangs a run: the wait ends with an error after ``STCL_HOLD_TIMEOUT_S`` seconds (default 600) when
nobody writes; SIGTERM/SIGINT are honoured while waiting (the command's own handlers run: exit 75 / 130,
`stcl train` first writes its checkpoint); at most 64 KiB is read from the pipe; a missing path, a path that
is not a named pipe (``/dev/zero``, a regular file) or a malformed value is refused at once. Every message
names the variable. The errors are ValueError (`stcl` exits 1 with that one line).

Points: ``command.<name>`` (every `stcl` command, once its arguments are parsed, before it does anything,
`stcl.cli`); ``train.checkpoint.<iteration>`` (after that checkpoint is on disk, `stcl.train.loop`);
``<stage>.video_done.<video>`` with stage ``infer``, ``pseudo_label`` or ``predict`` (after that video's
files are in place, `stcl.infer.driver`; `stcl predict`'s video is its input's file or folder name).
"""

from __future__ import annotations

import os
import select
import stat
import time
from collections.abc import Callable

__all__ = ["ENV", "TIMEOUT_ENV", "DEFAULT_TIMEOUT_S", "READ_LIMIT", "HoldError", "hold"]

ENV = "STCL_HOLD"
TIMEOUT_ENV = "STCL_HOLD_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
READ_LIMIT = 64 * 1024  # bytes read from the pipe at most: a writer that never stops releases the hold
_SLICE_S = 0.2  # how often `stop` is asked while waiting


class HoldError(ValueError):
    """STCL_HOLD is malformed, names no named pipe, or nobody released the hold in time (one line)."""


def _timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise HoldError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0 (the longest {ENV} wait)")
    return value


def _spec() -> tuple[str, str] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    point, sep, fifo = spec.partition("=")
    if not sep or not point or not fifo:
        raise HoldError(f"{ENV}={spec!r}: expected <point>=<named pipe>")
    return point, fifo


def _open_fifo(fifo: str, point: str) -> int:
    where = f"{ENV}: {fifo} (hold point {point})"
    try:
        mode = os.stat(fifo).st_mode
    except FileNotFoundError:
        raise HoldError(f"{where}: no such named pipe; create it with mkfifo") from None
    except OSError as err:
        raise HoldError(f"{where}: {err.strerror}") from None
    if not stat.S_ISFIFO(mode):
        raise HoldError(f"{where}: not a named pipe; create one with mkfifo")
    try:
        return os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # returns at once; the wait is the poll below
    except OSError as err:
        raise HoldError(f"{where}: {err.strerror}") from None


def hold(point: str, stop: Callable[[], bool] | None = None) -> None:
    """Wait at ``point`` if ``STCL_HOLD`` names it, until a writer opens and closes its pipe.

    Args:
        point: this place's name.
        stop: asked every 0.2 s; True ends the wait (a signal handler that only sets a flag, as `stcl train`'s
            preemption handler, cannot end it otherwise). Handlers that raise end it at once.

    Raises:
        HoldError: see the module docstring.
    """
    found = _spec()
    if found is None or found[0] != point:
        return
    fifo = found[1]
    timeout = _timeout()
    fd = _open_fifo(fifo, point)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        deadline = time.monotonic() + timeout
        total = 0
        while total < READ_LIMIT:
            if stop is not None and stop():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise HoldError(
                    f"{ENV}: {fifo} (hold point {point}): nobody opened it for writing within {timeout:g} s "
                    f"({TIMEOUT_ENV}); giving up"
                )
            # Linux reports no event on a FIFO that never had a writer; data (POLLIN) or its writer's close
            # (POLLHUP) wake us. A signal interrupts the poll: the handler runs (and may raise) first.
            if not poller.poll(max(1, int(1000 * (min(left, _SLICE_S) if stop is not None else left)))):
                continue
            try:
                chunk = os.read(fd, READ_LIMIT - total)
            except BlockingIOError:
                continue
            if not chunk:
                return  # the writer closed it: released
            total += len(chunk)
    finally:
        os.close(fd)
