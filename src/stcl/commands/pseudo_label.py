"""`stcl pseudo_label`: teacher pseudo labels on the unlabeled frames, one shard per job, then a gather.

    stcl pseudo_label --shard 0/2 --unlabeled U.txt --checkpoints A.pt B.pt --dataset DS --shards-dir SH
    stcl pseudo_label --shard 1/2 ...      # videos sorted(videos)[i::n] → DS/data/<video>/, record SH/i-of-n.json
    stcl pseudo_label --gather --unlabeled U.txt --dataset DS --shards-dir SH --stats stats.json

The teacher is the ensemble of ``--checkpoints`` (weights ``params.teacher.weights``), run with
``params.pseudo_label`` scales/flip and ``params.infer`` window, stride, batch size and amp. Frames are read
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
    p.add_argument("--shards-dir", type=Path, required=True, help="folder of the per-shard records <i>-of-<n>.json")
    p.add_argument("--checkpoints", nargs="+", type=Path, metavar="MODEL_PT", help="teacher members (--shard)")
    p.add_argument("--frames-root", type=Path, default=None, help="root of the unlabeled frames (default: params)")
    p.add_argument("--stats", type=Path, default=None, help="statistics JSON to write (--gather)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    from stcl.data.classes import VSPW_CLASSES
    from stcl.infer import pseudo_labels as pl
    from stcl.params import load_params

    params = load_params(args.params)
    count = params.pseudo_label.shards
    if not args.gather:
        index, n = pl.parse_shard(args.shard)
        if n != count:
            raise ValueError(f"--shard {args.shard}: N must equal pseudo_label.shards = {count} in {args.params}")
    if not args.gather and not args.checkpoints:
        raise ValueError("--checkpoints: a shard needs the teacher's model.pt files")
    if args.gather and args.stats is None:
        raise ValueError("--stats: --gather writes the statistics JSON there")
    frames = pl.read_unlabeled_list(args.unlabeled)
    dataset, shards_dir = args.dataset, args.shards_dir
    if args.gather:
        stats = pl.gather(
            frames,
            count,
            out_root=dataset,
            shards_dir=shards_dir,
            stats_path=args.stats,
            class_names=VSPW_CLASSES,
        )
        print(
            f"stcl pseudo_label: {stats['videos']} videos, {stats['frames']} frames, "
            f"kept fraction {stats['kept_fraction']:.4f} -> {dataset}"
        )
        return 0
    return _run_shard(params, frames, index, count, args, dataset, shards_dir)


def _run_shard(
    params: Params,
    frames: dict[str, list[str]],
    index: int,
    count: int,
    args: argparse.Namespace,
    dataset: Path,
    shards_dir: Path,
) -> int:
    import torch

    from stcl.data.classes import VSPW_NUM_CLASSES
    from stcl.data.prepare import unlabeled_frame_path
    from stcl.infer import pseudo_labels as pl
    from stcl.infer.ensemble import load_members
    from stcl.infer.multiscale import TTA
    from stcl.infer.sliding import Window

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    members = load_members(args.checkpoints, params.teacher.weights, device=device, amp=params.infer.amp)
    data = params.data
    if args.frames_root is not None and data.unlabeled.source == "folder":
        data = data.model_copy(update={"unlabeled": data.unlabeled.model_copy(update={"folder": args.frames_root})})
    elif args.frames_root is not None:
        data = data.model_copy(update={"vspw_root": args.frames_root})
    tta = TTA(
        scales=params.pseudo_label.scales,
        flip=params.pseudo_label.flip,
        window=Window(params.infer.crop_size, params.infer.stride),
        batch_size=params.infer.batch_size,
    )
    result = pl.run_shard(
        members,
        tta,
        frames,
        index,
        count,
        frame_path=lambda video, stem: unlabeled_frame_path(data, f"{video}/{stem}"),
        out_root=dataset,
        shards_dir=shards_dir,
        threshold=params.pseudo_label.threshold,
        class_balanced_portion=params.pseudo_label.class_balanced_portion,
        num_classes=VSPW_NUM_CLASSES,
        device=device,
        workers=params.infer.workers,
        progress=sys.stderr.isatty(),
    )
    print(
        f"stcl pseudo_label: shard {index}/{count}: {len(result.computed)} videos labelled, "
        f"{len(result.skipped)} already complete -> {pl.shard_record_path(shards_dir, index, count)}"
    )
    return 0
