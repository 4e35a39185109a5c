"""The command line the sharded inference commands share (`stcl infer`, `stcl pseudo_label`); not a command.

    --params FILE  --root FRAMES_ROOT  --checkpoint NAME=PATH ...  [--shard I/N] [--record FILE]  [--device D]
    --gather --record FILE0 FILE1 ...

``--checkpoint NAME=PATH`` names one model (repeat); ``--root`` is where the frames are read; ``--shard i/n``
runs ``sorted(videos)[i::n]`` (``n`` must be the params' shard count of the stage; without it, every video)
and ``--record`` is the record it writes last; ``--gather`` checks the records of all ``n`` shards. Both
commands run their writer through the one video driver, `stcl.infer.driver`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser, root_help: str, root_required: bool = True) -> None:
    """The options every sharded command has, spelled once (``--root``: required where a gather reads it)."""
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--root", type=Path, required=root_required, help=root_help)
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="a named model (repeat)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--shard", default=None, metavar="I/N", help="only videos sorted(videos)[I::N] (N: the params' shards)")
    mode.add_argument("--gather", action="store_true", help="check every shard's record (--record) and the outputs")
    p.add_argument("--record", type=Path, nargs="+", default=None,
                   help="the shard's record to write, or with --gather every shard's record")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def parse_checkpoint_arg(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` → (name, path); ValueError naming ``--checkpoint`` otherwise."""
    from stcl.infer.outputs import NAME

    name, sep, path = text.partition("=")
    if not sep or not NAME.fullmatch(name) or not path:
        raise ValueError(
            f"--checkpoint must be NAME=PATH (e.g. train_stcl=results/models/train_stcl/model.pt), got {text!r}"
        )
    return name, Path(path)


def checkpoints(args: argparse.Namespace) -> dict[str, Path]:
    """The ``--checkpoint`` models, name → file; ValueError naming ``--checkpoint`` if none or a name twice."""
    if not args.checkpoint:
        raise ValueError("--checkpoint: a shard needs its models (NAME=PATH)")
    named = dict(parse_checkpoint_arg(text) for text in args.checkpoint)
    if len(named) != len(args.checkpoint):
        raise ValueError("--checkpoint: each NAME must be given once")
    return named


def shard(args: argparse.Namespace, expected: int, key: str) -> tuple[int, int, Path | None]:
    """(index, count, record) of a shard run, ``count`` checked against the params' ``key`` = ``expected``."""
    from stcl.infer.driver import select_shard

    if args.record is not None and len(args.record) != 1:
        raise ValueError("--record: a shard writes one record")
    index, count = select_shard(args.shard, expected, key)
    return index, count, args.record[0] if args.record else None


def gathered_records(args: argparse.Namespace, expected: int, key: str) -> list[Path]:
    """``--record`` of a gather: one per shard, ``expected`` of them (the params' ``key``)."""
    from stcl.infer.driver import check_record_count

    if not args.record:
        raise ValueError("--record: --gather checks every shard's record")
    check_record_count(args.record, expected, key)
    return list(args.record)


def device(args: argparse.Namespace) -> Any:
    """``--device``, or cuda when there is one and torch runs the windows (``--engine``), else cpu."""
    import torch

    on_gpu = torch.cuda.is_available() and getattr(args, "engine", "torch") == "torch"
    return torch.device(args.device or ("cuda" if on_gpu else "cpu"))
