"""`stcl pseudo_label`: teacher pseudo labels on the unlabeled frames, one shard per job, then a gather.

    stcl pseudo_label --shard 0/2 --unlabeled U.txt --root data/VSPW_480p \
        --checkpoint train_ade=A.pt --checkpoint train_stcl=S.pt --dataset DS --record SH/0-of-2.json
    stcl pseudo_label --shard 1/2 ...      # videos sorted(videos)[i::n] → DS/data/<video>/, then its record
    stcl pseudo_label --gather --unlabeled U.txt --dataset DS --record SH/0-of-2.json SH/1-of-2.json --stats S.json

The teacher is the ensemble of the ``--checkpoint NAME=PATH`` models, one per member of
``params.teacher.members`` (weights ``params.teacher.weights``), run with the TTA of
`stcl.infer.multiscale.pseudo_label_tta` (``params.pseudo_label`` scales/flip, ``params.infer`` window, stride,
batch size and amp). Frames are read from the pool ``params.data.unlabeled`` names, under ``--root`` (the
VSPW root, or the folder of ``data.unlabeled.source: folder``). Labels: argmax where max probability >
``pseudo_label.threshold`` (strict), else 255. ``n`` of ``--shard i/n`` and the records of ``--gather``
must number ``params.pseudo_label.shards``. The options it shares with `stcl infer`: `stcl.commands.sharded`;
the library: `stcl.infer.pseudo_labels` (the pseudo-label writer of `stcl.infer.driver`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from stcl.commands import sharded

if TYPE_CHECKING:
    from stcl.params import Params


def add_arguments(p: argparse.ArgumentParser) -> None:
    sharded.add_arguments(
        p, root_help="root of the unlabeled frames (the VSPW root, or data.unlabeled's folder; --shard)",
        root_required=False,
    )
    p.add_argument("--unlabeled", type=Path, required=True, help="list of '<video>/<frame>' lines (`stcl prepare`)")
    p.add_argument("--dataset", type=Path, required=True, help="pseudo-label dataset root (VSPW layout) to fill")
    p.add_argument("--stats", type=Path, default=None, help="statistics JSON to write (--gather)")


def run(args: argparse.Namespace) -> int:
    from stcl.data.classes import VSPW_CLASSES
    from stcl.infer import pseudo_labels as pl
    from stcl.params import load_params
    from stcl.allocator import keep_large_blocks

    keep_large_blocks()  # the frame loop's large blocks stay mapped (stcl.allocator)

    params = load_params(args.params)
    key, count = "pseudo_label.shards", params.pseudo_label.shards
    if args.gather:
        records = sharded.gathered_records(args, count, key)
        if args.stats is None:
            raise ValueError("--stats: --gather writes the statistics JSON there")
        frames = pl.read_unlabeled_list(args.unlabeled)
        stats = pl.gather(frames, records, out_root=args.dataset, stats_path=args.stats, class_names=VSPW_CLASSES)
        print(
            f"stcl pseudo_label: {stats['videos']} videos, {stats['frames']} frames, "
            f"kept fraction {stats['kept_fraction']:.4f} -> {args.dataset}"
        )
        return 0
    index, count, record = sharded.shard(args, count, key)
    if record is None:
        raise ValueError("--record: a pseudo-label shard writes its record there (the gather reads it)")
    if args.root is None:
        raise ValueError("--root: a pseudo-label shard reads its frames there (the VSPW root or data.unlabeled's folder)")
    named = sharded.checkpoints(args)
    members = params.teacher.members
    if sorted(named) != sorted(members):
        raise ValueError(
            f"--checkpoint: the teacher's members are {', '.join(members)} (teacher.members in {args.params}), "
            f"got {', '.join(named)}"
        )
    frames = pl.read_unlabeled_list(args.unlabeled)
    return _run_shard(params, frames, index, count, args, {m: named[m] for m in members}, record)


def _run_shard(
    params: Params,
    frames: dict[str, list[str]],
    index: int,
    count: int,
    args: argparse.Namespace,
    named: dict[str, Path],
    record: Path,
) -> int:
    from stcl.data.classes import VSPW_NUM_CLASSES
    from stcl.data.prepare import unlabeled_frame_path
    from stcl.infer import pseudo_labels as pl
    from stcl.infer.ensemble import load_models, normalized_weights
    from stcl.infer.multiscale import pseudo_label_tta

    tta = pseudo_label_tta(params)
    device = sharded.device(args)
    weights = normalized_weights(len(named), params.teacher.weights)
    teacher = pl.Teacher(load_models(named, device, tta.amp), tuple(weights))
    data = params.data
    if data.unlabeled.source == "folder":
        data = data.model_copy(update={"unlabeled": data.unlabeled.model_copy(update={"folder": args.root})})
    else:
        data = data.model_copy(update={"vspw_root": args.root})
    result = pl.run_shard(
        teacher,
        tta,
        frames,
        index,
        count,
        frame_path=lambda video, stem: unlabeled_frame_path(data, f"{video}/{stem}"),
        out_root=args.dataset,
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
