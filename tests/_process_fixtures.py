"""Helpers for tests that run real child processes: SIGINT as in a terminal, waiting for an event, ending."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest


def default_sigint() -> None:
    """``preexec_fn`` of a child that must react to Ctrl-C: SIGINT as in a terminal (pytest run as a background
    job of a non-interactive shell passes it on ignored, which stcl keeps, as `nohup` users expect)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"process exited ({proc.returncode}) before {what}: {(err or '')[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """Wait for ``proc`` to end: (exit status, stderr). Kills it and fails, naming its command line, if it still
    runs after ``timeout`` seconds (a held process not released, a rank still waiting...)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{proc.args} did not end within {timeout:g} s")
    return proc.returncode, err
