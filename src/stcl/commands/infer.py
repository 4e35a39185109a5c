"""`stcl infer`: sliding-window, multi-scale + flip inference of a split: named models, one pass, many outputs.

    stcl infer --split val --root data/VSPW_480p --checkpoint stcl=S.pt --checkpoint ade=A.pt \
        --checkpoint student=T.pt --output teacher=ade,stcl=results/predictions/val/teacher \
        --output ensemble=student,stcl,ade:2,1,1=results/predictions/val/ensemble \
        [--shard 0/4 --record results/infer/val/0-of-4.json] [--save-probs]
    stcl infer --split val --root data/VSPW_480p --output ... --gather --record R0 R1 R2 R3 --manifest M.json

Each ``--checkpoint NAME=PATH`` model runs once per frame; each ``--output NAME=M1,M2[:W1,W2]=DIR`` is the
weighted mean of its members' probabilities, written as ``DIR/<video>/<frame>.png`` (palette PNG, class
ids 0..123, frame size), one video folder at a time, atomically; a rerun skips the videos already
complete. ``--shard i/n`` does ``sorted(videos)[i::n]`` (``n`` must equal ``infer.shards``) and writes
``--record``; ``--gather`` checks the records of all shards and the outputs and writes ``--manifest``
(the options it shares with `stcl pseudo_label`: `stcl.commands.sharded`). Scales, flip, window, stride, windows per batch and amp
come from ``params.infer`` (`stcl.infer.multiscale.tta_from_params`); amp applies on CUDA, CPU inference is
float32. The library is `stcl.infer.outputs` (the predictions writer of `stcl.infer.driver`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from stcl.commands import sharded

if TYPE_CHECKING:
    from stcl.infer.outputs import OutputSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    sharded.add_arguments(p, root_help="VSPW root: its <split>.txt lists the videos to predict")
    p.add_argument(
        "--output", action="append", default=[], metavar="NAME=M1,M2[:W1,W2]=DIR", help="an output of named models"
    )
    p.add_argument("--manifest", type=Path, default=None, help="with --gather: the manifest JSON to write")
    p.add_argument("--split", required=True, choices=("train", "val", "test"), help="split of the VSPW root")
    p.add_argument("--save-probs", action="store_true", help="also write <frame>.npy float16 (C, H, W) probabilities")
    p.add_argument("--engine", choices=("torch", "onnxruntime"), default="torch",
                   help="what runs each window: torch (model.pt) or onnxruntime (.onnx files of stcl export, CPU)")


def output_paths(args: argparse.Namespace) -> list[Path]:
    """The folders of ``--output`` (`stcl.cli` removes the empty ones it created when the command fails)."""
    return [Path(parts[2]) for parts in (text.split("=", 2) for text in args.output) if len(parts) == 3 and parts[2]]


def parse_output_arg(text: str, save_probs: bool = False) -> OutputSpec:
    """``NAME=M1,M2[:W1,W2]=DIR`` → `OutputSpec`; ValueError naming ``--output`` otherwise.

    Example: ``teacher=train_ade,train_stcl:1,1=results/predictions/val/teacher``.
    """
    from stcl.infer.outputs import NAME, OutputSpec

    parts = text.split("=", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"--output must be NAME=MEMBERS[:WEIGHTS]=DIR (e.g. ensemble=a,b,c=out/), got {text!r}")
    name, members_text, out = parts
    members_part, _, weights_part = members_text.partition(":")
    members = tuple(members_part.split(","))
    if any(not NAME.fullmatch(m) for m in members):
        raise ValueError(f"--output {text!r}: members must be comma-separated checkpoint names")
    weights = None
    if weights_part:
        try:
            weights = tuple(float(w) for w in weights_part.split(","))
        except ValueError:
            raise ValueError(f"--output {text!r}: weights must be comma-separated numbers") from None
    try:
        return OutputSpec(name, members, Path(out), weights, save_probs)
    except ValueError as err:
        raise ValueError(f"--output {text!r}: {err}") from None


def run(args: argparse.Namespace) -> int:
    from stcl.data.vspw import read_split
    from stcl.params import load_params
    from stcl.allocator import keep_large_blocks

    keep_large_blocks()  # the frame loop's large blocks stay mapped (stcl.allocator)

    params = load_params(args.params)
    if not args.output:
        raise ValueError("stcl infer: give at least one --output NAME=MEMBERS[:WEIGHTS]=DIR")
    outputs = [parse_output_arg(text, args.save_probs) for text in args.output]
    videos = read_split(args.root, args.split)
    if args.gather:
        from stcl.infer.outputs import gather_outputs

        records = sharded.gathered_records(args, params.infer.shards, "infer.shards")
        if not args.manifest:
            raise ValueError("--manifest: --gather writes the manifest there")
        result = gather_outputs(records, outputs, args.root, videos, args.manifest)
        print(f"stcl infer: gathered {len(records)} shard(s), {result['frames']} frames -> {args.manifest}")
        return 0
    index, count, record = sharded.shard(args, params.infer.shards, "infer.shards")
    summary = _predict(params, sharded.checkpoints(args), outputs, args, videos, index, count, record)
    print(
        f"stcl infer: shard {index}/{count}: {len(summary.computed)} videos ({summary.frames} frames, "
        f"{summary.forward_passes} model x view passes) -> {', '.join(o.name for o in outputs)}; "
        f"{len(summary.skipped)} already complete"
    )
    return 0


def _predict(params, named: dict[str, Path], outputs: list[OutputSpec], args, videos, index, count, record):
    from stcl.infer.driver import run_shard
    from stcl.infer.onnx_engine import load_predictors
    from stcl.infer.multiscale import tta_from_params
    from stcl.infer.outputs import OutputsWriter, check_outputs

    check_outputs(list(named), outputs)
    used = {m for o in outputs for m in o.members}
    tta = tta_from_params(params.infer)
    device = sharded.device(args)
    models = load_predictors({n: p for n, p in named.items() if n in used}, device, tta.amp, args.engine)
    return run_shard(
        OutputsWriter(models, outputs, args.root), videos, index, count, tta, record=record,
        record_extra={"split": args.split}, device=device, workers=params.infer.workers, progress=sys.stderr.isatty(),
    )
