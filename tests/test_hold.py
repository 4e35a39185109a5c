"""`stcl.hold` (the STCL_HOLD test hook) never hangs a run: refusals in one line naming the variable, a
bounded wait, a bounded read, and signals honoured while a training waits at a hold point.

Each case runs in a child process with a memory limit, so that a regression (an endless read of /dev/zero,
a wait that never ends) fails the test instead of hanging it or filling the machine's memory.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _process_fixtures import default_sigint, finish, wait_for

from stcl.exit_codes import EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_USER_ERROR
from stcl.hold import ENV, TIMEOUT_ENV
from stcl.train.state import CheckpointManager

TESTS = Path(__file__).parent
HOLD_AT_P = "from stcl.hold import hold; hold('p')"


def _limit_memory() -> None:
    """In the child: a memory cap, and SIGINT as in a terminal (`default_sigint`)."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    default_sigint()


def _child(code: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=TESTS.parent,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path]), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_memory,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("p={missing}", "STCL_HOLD: {missing} (hold point p): no such named pipe; create it with mkfifo"),
        ("p=/dev/zero", "STCL_HOLD: /dev/zero (hold point p): not a named pipe; create one with mkfifo"),
        ("p={regular}", "STCL_HOLD: {regular} (hold point p): not a named pipe; create one with mkfifo"),
        ("p", "STCL_HOLD='p': expected <point>=<named pipe>"),
    ],
)
def test_what_is_not_a_named_pipe_is_refused_in_one_line_naming_the_variable(tmp_path, value, message) -> None:
    names = {"missing": str(tmp_path / "nowhere"), "regular": str(tmp_path / "file")}
    (tmp_path / "file").write_bytes(b"x" * 10)
    code, err = finish(_child(HOLD_AT_P, **{ENV: value.format(**names)}))
    assert code != 0
    assert err.strip().splitlines()[-1] == "stcl.hold.HoldError: " + message.format(**names)


def test_a_pipe_nobody_writes_ends_the_wait_after_the_timeout(tmp_path) -> None:
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    code, err = finish(_child(HOLD_AT_P, **{ENV: f"p={fifo}", TIMEOUT_ENV: "0.5"}))
    assert code != 0
    assert err.strip().splitlines()[-1] == (
        f"stcl.hold.HoldError: STCL_HOLD: {fifo} (hold point p): nobody opened it for writing within 0.5 s "
        "(STCL_HOLD_TIMEOUT_S); giving up"
    )
    code, err = finish(_child(HOLD_AT_P, **{ENV: f"p={fifo}", TIMEOUT_ENV: "soon"}))
    assert err.strip().splitlines()[-1].endswith("STCL_HOLD_TIMEOUT_S='soon': expected a number of seconds > 0 "
                                                 "(the longest STCL_HOLD wait)")


def test_a_stcl_command_held_too_long_exits_1_in_one_line(tmp_path) -> None:
    """What `stcl` makes of it: the command's one error line and exit 1 (here `stcl params`, held at start)."""
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    code = "import sys; from stcl.cli import main; sys.exit(main(['params', '--params', 'params.yaml']))"
    proc = _child(code, **{ENV: f"command.params={fifo}", TIMEOUT_ENV: "0.5"})
    returncode, err = finish(proc)
    assert returncode == EXIT_USER_ERROR
    assert err.strip().splitlines() == [
        f"stcl params: error: STCL_HOLD: {fifo} (hold point command.params): nobody opened it for writing within "
        "0.5 s (STCL_HOLD_TIMEOUT_S); giving up"
    ]


def test_a_writer_releases_the_hold_and_an_endless_writer_is_read_only_so_far(tmp_path) -> None:
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    proc = _child(HOLD_AT_P + "; print('released')", **{ENV: f"p={fifo}"})
    with open(fifo, "wb"):  # opens once the child has opened it for reading; closing releases it
        pass
    code, err = finish(proc)
    assert code == 0, err

    proc = _child(HOLD_AT_P + "; print('released')", **{ENV: f"p={fifo}"})
    ended = threading.Event()

    def endless() -> None:  # as `yes > fifo`: stops only when the reader is gone
        try:
            with open(fifo, "wb") as w:
                while True:
                    w.write(b"y" * 65536)
        except BrokenPipeError:
            ended.set()

    writer = threading.Thread(target=endless, daemon=True)
    writer.start()
    code, err = finish(proc)
    assert code == 0, err
    writer.join(timeout=60)
    assert ended.is_set()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, EXIT_PREEMPTED), (signal.SIGINT, EXIT_INTERRUPTED)])
def test_a_signal_while_training_waits_at_a_hold_point_checkpoints_and_exits(tmp_path, sig, code) -> None:
    """The toy training (12 iterations, a checkpoint every 5) held after iteration 5: the signal ends the
    wait, the next iteration runs, its checkpoint is written and the process exits with the signal's code."""
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "_train_fixtures.py"), str(out), "0", "SIGKILL"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path]), ENV: f"train.checkpoint.5={fifo}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    ckpts = CheckpointManager(out / "state")
    wait_for(lambda: ckpts.latest() is not None, proc, "the checkpoint of iteration 5")
    proc.send_signal(sig)
    returncode, err = finish(proc)
    assert returncode == code, err
    assert [i for i, _ in ckpts.list()] == [5, 6] and not (out / "model.pt").exists()
