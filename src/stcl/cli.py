"""The `stcl` command: one subcommand per pipeline stage.

Each subcommand lives in `stcl.commands.<name>` (the same name as the workflow rule that runs it) with two
functions, ``add_arguments(parser)`` and ``run(args) -> int``; ``check-data`` is accepted for ``check_data``
(hyphens and underscores are the same). Modules are imported only when their subcommand runs, so a light command (evaluate,
check-data) does not pay for importing torch.

Exit codes (the same for every subcommand; `main` is the one place that maps failures to them):

* 0 (`EXIT_OK`): done.
* 1 (`EXIT_USER_ERROR`): bad input, missing file, full disk, output folder in use...: one line on stderr
  ``stcl <command>: error: <path or key>: <what>`` (``STCL_DEBUG=1`` shows the traceback instead; unset,
  empty or ``0`` is off).
* 69 (`EXIT_UNAVAILABLE`, EX_UNAVAILABLE of sysexits.h): what the command waited for never came (the other
  processes of a multi-node training within ``cluster.train.rendezvous_timeout_s``); one line naming it.
* 75 (`EXIT_PREEMPTED`, EX_TEMPFAIL of sysexits.h): stopped by SIGTERM or SIGUSR1 (Slurm preemption or
  time limit); `stcl train` writes a checkpoint first. Run the same command again to continue.
* 130 (`EXIT_INTERRUPTED`, 128 + SIGINT as shells report it): Ctrl-C; `stcl train` writes a checkpoint
  first. Run the same command again to continue.
* 2: command-line usage error (argparse).

Whatever the failure, nothing half-written keeps a final name (every writer goes through `stcl.atomic`),
and the folders the command created under its output arguments (``--out``, ``--out-*``, ``--json``, and
those its module's ``output_paths(args)`` names, e.g. the folders of `stcl infer --output`) are
removed again if they are empty.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stcl import __version__, numerics
from stcl.atomic import DISK_FULL_ERRNOS, remove_new_empty_dirs, snapshot_dirs
from stcl.exit_codes import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_UNAVAILABLE,
    EXIT_USER_ERROR,
    UnavailableError,
)
from stcl.hold import hold

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # the signals of a batch scheduler's preemption / time limit

# subcommand (= module under stcl.commands) → one-line help
COMMANDS: dict[str, str] = {
    "synth": "write the embedded mini datasets (VSPW, COCO panoptic, ADE20K formats)",
    "check_data": "validate a dataset root and report every problem found",
    "prepare": "validate datasets, convert COCO panoptic to semantic maps, list unlabeled frames",
    "train": "train one stage of params.yaml (torchrun-aware, resumable)",
    "infer": "sliding-window multi-scale + flip inference with a model ensemble",
    "predict": "run models on your own video or frame folder: label PNGs + an overlay video",
    "export": "a trained model as one ONNX file (dynamic batch, height, width) for onnxruntime",
    "plan": "work, GPU time, wall time and memory of every job at the current params; warnings",
    "pseudo_label": "teacher pseudo labels on unlabeled 480P frames (sharded)",
    "flow": "RAFT flows of a split for the TC metric (once, for every model)",
    "evaluate": "mIoU, WIoU, VC8, VC16 and per-class IoU of predictions (and TC with --flows)",
    "tables": "the paper's Tables 1-4 filled with this run's metrics",
    "submit": "validate test predictions and write the submission zip",
    "report": "figures of a run (curves, per-class IoU, VC per video, qualitative views) + an HTML page",
    "weights": "which format a weights file is, which backbones it fits, whether it loads strictly",
    "params": "print validated params, the JSON schema, or the paper preset",
    "ablation": "write the params file of one paper ablation (Tables 1-3)",
    "summary": "where the zip and tables are, wall time per job, val metrics beside chance",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stcl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"stcl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM/SIGUSR1 (a BaseException, so ``except Exception`` lets it pass)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raising_handler(main_pid: int, exception: Callable[[int], BaseException]) -> Callable[[int, Any], None]:
    """A signal handler raising ``exception(signum)`` in the main process. A forked worker (DataLoader,
    process pool) inherits it: there it restores the default action and re-sends the signal, so the worker
    dies quietly (no traceback per worker) and the main process alone reports."""

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise exception(signum)

    return handler


def output_paths(args: argparse.Namespace) -> list[Path]:
    """The paths a command writes, by argument name: ``out``, ``out_*`` and ``json``."""
    return [
        Path(v)
        for k, v in vars(args).items()
        if v is not None and (k == "out" or k.startswith("out_") or k == "json") and isinstance(v, (str, Path))
    ]


def error_line(err: BaseException, outputs: list[Path]) -> str:
    """One line for a user-facing failure: the path first, then what went wrong."""
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        where = err.filename or (str(outputs[0]) if outputs else None)
        what = "no space left on device" if err.errno == DISK_FULL_ERRNOS[0] else "disk quota exceeded"
        hint = "free some space (complete outputs are kept) and run the same command again"
        return f"{where}: {what} ({hint})" if where else f"{what} ({hint})"
    if isinstance(err, OSError) and err.filename and err.strerror and str(err.filename) not in err.strerror:
        return f"{err.filename}: {err.strerror}"
    return str(err)


def _debugging() -> bool:
    """``STCL_DEBUG`` asks for tracebacks; unset, empty or ``0`` means off."""
    return os.environ.get("STCL_DEBUG", "").strip() not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    try:
        numerics.apply()  # portable float32 kernels (stcl.numerics) before torch dispatches anything
    except numerics.NumericsError as err:  # a value the libraries would ignore, silently unpinning
        print(f"stcl: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].replace("-", "_") in COMMANDS:
        argv[0] = argv[0].replace("-", "_")
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage / error / version and exits
        return 2
    name, rest = argv[0], argv[1:]
    try:
        module = importlib.import_module(f"stcl.commands.{name}")
    except KeyboardInterrupt:  # Ctrl-C while the command's modules load: nothing written yet
        print(f"stcl {name}: interrupted (SIGINT); no partial output kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    sub = argparse.ArgumentParser(prog=f"stcl {name}", description=COMMANDS[name])
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    outputs = output_paths(args) + list(getattr(module, "output_paths", lambda _: [])(args))  # its own, if named
    before = {p: snapshot_dirs(p) for p in outputs}
    old_handlers = {}
    try:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # nohup / background jobs keep ignoring it
            old_handlers[signal.SIGINT] = signal.signal(
                signal.SIGINT, _raising_handler(os.getpid(), lambda signum: KeyboardInterrupt())
            )
        for s in STOP_SIGNALS:
            if signal.getsignal(s) is not signal.SIG_IGN:
                old_handlers[s] = signal.signal(s, _raising_handler(os.getpid(), Stopped))
    except ValueError:  # not the main thread (main() called from a thread): signals keep their handlers
        pass
    code = EXIT_USER_ERROR
    try:
        hold(f"command.{name}")  # tests: stop here on request, arguments parsed, nothing done yet (stcl.hold)
        code = int(module.run(args) or 0)
        return code
    except (ValueError, OSError) as err:
        # User-facing failures (bad params, bad data, full disk) get one clear line; STCL_DEBUG=1 shows the traceback.
        if _debugging():
            raise
        print(f"stcl {name}: error: {error_line(err, outputs)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except UnavailableError as err:
        if _debugging():
            raise
        print(f"stcl {name}: error: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        print(f"stcl {name}: interrupted (SIGINT); no partial output kept", file=sys.stderr)
        return code
    except Stopped as stop:
        code = EXIT_PREEMPTED
        print(
            f"stcl {name}: stopped by {signal.Signals(stop.signum).name}; no partial output kept; "
            f"run the same command again to continue (exit {EXIT_PREEMPTED})",
            file=sys.stderr,
        )
        return code
    finally:
        for s, old in old_handlers.items():
            signal.signal(s, old)
        if code != EXIT_OK:
            for p in outputs:
                remove_new_empty_dirs(p, before[p])
