"""The `stcl` command: one subcommand per pipeline stage.

Each subcommand lives in `stcl.commands.<module>` with two functions, ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so a light command (evaluate,
check-data) does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from stcl import __version__

# subcommand → (module under stcl.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "write the embedded mini datasets (VSPW, COCO panoptic, ADE20K formats)"),
    "check-data": ("check_data", "validate a dataset root and report every problem found"),
    "prepare": ("prepare", "validate datasets, convert COCO panoptic to semantic maps, list unlabeled frames"),
    "train": ("train", "train one stage of params.yaml (torchrun-aware, resumable)"),
    "infer": ("infer", "sliding-window multi-scale + flip inference with a model ensemble"),
    "pseudo-label": ("pseudo_label", "teacher pseudo labels on unlabeled 480P frames (sharded)"),
    "evaluate": ("evaluate", "mIoU, WIoU, VC8, VC16 and per-class IoU of predictions"),
    "tables": ("tables", "the paper's Tables 1-4 filled with this run's metrics"),
    "submit": ("submit", "validate test predictions and write the submission zip"),
    "params": ("params", "print validated params, the JSON schema, or the paper preset"),
    "ablation": ("ablation", "write the params file of one paper ablation (Tables 1-3)"),
    "plan": ("plan", "work, GPU time, wall time and memory of every job at the current params; warnings"),
    "summary": ("summary", "where the zip and tables are, wall time per job, val metrics beside chance"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stcl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"stcl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage / error / version and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"stcl.commands.{COMMANDS[name][0]}")
    sub = argparse.ArgumentParser(prog=f"stcl {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError) as err:
        # User-facing failures (bad params, bad data) get one clear line; STCL_DEBUG=1 shows the traceback.
        if os.environ.get("STCL_DEBUG"):
            raise
        print(f"stcl {name}: error: {err}", file=sys.stderr)
        return 1
