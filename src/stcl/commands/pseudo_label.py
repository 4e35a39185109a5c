"""`stcl pseudo_label`: teacher pseudo labels on the unlabeled frames, one shard per job, then a gather.

    stcl pseudo_label --shard 0/2 --unlabeled U.txt --checkpoints A.pt B.pt --dataset DS --record SH/0-of-2.json
    stcl pseudo_label --shard 1/2 ...      # videos sorted(videos)[i::n] → DS/data/<video>/, then its record
    stcl pseudo_label --gather --unlabeled U.txt --dataset DS --record SH/0-of-2.json SH/1-of-2.json --stats S.json

The teacher is the ensemble of ``--checkpoints`` (weights ``params.teacher.weights``), run with
``params.pseudo_label`` scales/flip and ``params.infer`` window, stride, batch size and amp (the TTA of
`stcl.infer.multiscale.tta_from_params`, as `stcl infer` builds it). Frames are read
from the pool ``params.data.unlabeled`` names (``--frames-root`` overrides its root). Labels: argmax where
max probability > ``pseudo_label.threshold`` (strict), else 255. ``n`` of ``--shard i/n`` must equal
``params.pseudo_label.shards`` (the gather step expects it). The library code is `stcl.infer.pseudo_labels`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stcl.params import Params


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--shard", metavar="I/N", help="run shard I of N (0 <= I < N)")
    mode.add_argument("--gather", action="store_true", help="check all shard records and write the dataset index")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--unlabeled", type=Path, required=True, help="list of '<video>/<frame>' lines (`stcl prepare`)")
    p.add_argument("--dataset", type=Path, required=True, help="pseudo-label dataset root (VSPW layout) to fill")
    p.add_argument("--record", type=Path, nargs="+", required=True,
                   help="the shard's record to write (--shard), or every shard's record in order (--gather)")
    p.add_argument("--checkpoints", nargs="+", type=Path, metavar="MODEL_PT", help="teacher members (--shard)")
    p.add_argument("--frames-root", type=Path, default=None, help="root of the unlabeled frames (default: params)")
    p.add_argument("--stats", type=Path, default=None, help="statistics JSON to write (--gather)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    from stcl.data.classes import VSPW_CLASSES
    from stcl.infer import pseudo_labels as pl
    from stcl.infer.shards import parse_shard
    from stcl.params import load_params
    from stcl.allocator import keep_large_blocks

    keep_large_blocks()  # the frame loop's large blocks stay mapped (stcl.allocator)

    params = load_params(args.params)
    count = params.pseudo_label.shards
    if not args.gather:
        index, n = parse_shard(args.shard)
        params.pseudo_label.check_shards(n, f"--shard {args.shard}", args.params)
    if not args.gather and not args.checkpoints:
        raise ValueError("--checkpoints: a shard needs the teacher's model.pt files")
    if args.gather and args.stats is None:
        raise ValueError("--stats: --gather writes the statistics JSON there")
    frames = pl.read_unlabeled_list(args.unlabeled)
    dataset = args.dataset
    if args.gather:
        params.pseudo_label.check_shards(len(args.record), "--record", args.params)
        stats = pl.gather(
            frames,
            args.record,
            out_root=dataset,
            stats_path=args.stats,
            class_names=VSPW_CLASSES,
        )
        print(
            f"stcl pseudo_label: {stats['videos']} videos, {stats['frames']} frames, "
            f"kept fraction {stats['kept_fraction']:.4f} -> {dataset}"
        )
        return 0
    if len(args.record) != 1:
        raise ValueError("--record: a shard writes one record")
    return _run_shard(params, frames, index, count, args, dataset, args.record[0])


def _run_shard(
    params: Params,
    frames: dict[str, list[str]],
    index: int,
    count: int,
    args: argparse.Namespace,
    dataset: Path,
    record: Path,
) -> int:
    import torch

    from stcl.data.classes import VSPW_NUM_CLASSES
    from stcl.data.prepare import unlabeled_frame_path
    from stcl.infer import pseudo_labels as pl
    from stcl.infer.ensemble import load_models, normalized_weights
    from stcl.infer.multiscale import tta_from_params

    tta = tta_from_params(params.infer, scales=params.pseudo_label.scales, flip=params.pseudo_label.flip)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    paths = {f"member{i}": path for i, path in enumerate(args.checkpoints)}
    weights = normalized_weights(len(paths), params.teacher.weights)
    teacher = pl.Teacher(load_models(paths, device, tta.amp), tuple(weights))
    data = params.data
    if args.frames_root is not None and data.unlabeled.source == "folder":
        data = data.model_copy(update={"unlabeled": data.unlabeled.model_copy(update={"folder": args.frames_root})})
    elif args.frames_root is not None:
        data = data.model_copy(update={"vspw_root": args.frames_root})
    result = pl.run_shard(
        teacher,
        tta,
        frames,
        index,
        count,
        frame_path=lambda video, stem: unlabeled_frame_path(data, f"{video}/{stem}"),
        out_root=dataset,
        record=record,
        threshold=params.pseudo_label.threshold,
        class_balanced_portion=params.pseudo_label.class_balanced_portion,
        num_classes=VSPW_NUM_CLASSES,
        device=device,
        workers=params.infer.workers,
        progress=sys.stderr.isatty(),
    )
    print(
        f"stcl pseudo_label: shard {index}/{count}: {len(result.computed)} videos labelled, "
        f"{len(result.skipped)} already complete -> {record}"
    )
    return 0
