"""`stcl submit`: validate the test predictions and write the challenge zip.

    stcl submit --pred results/predictions/ensemble/test --root data/VSPW_480p --split test \
        --out results/test_submission.zip

Every frame of the split must have ``<pred>/<video>/<frame>.png`` (single-channel, frame size, ids 0..123);
otherwise nothing is written and the error lists the first problems and their count. No torch import and
no params file: a standalone tool for any predictions in this layout.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="predictions folder: <pred>/<video>/<frame>.png")
    p.add_argument("--root", required=True, help="VSPW root whose split lists the videos and frames")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default: test)")
    p.add_argument("--out", required=True, help="zip to write (atomically)")


def run(args: argparse.Namespace) -> int:
    from stcl.infer.submission import collect_entries, validate_predictions, write_zip

    entries = collect_entries(args.pred, args.root, args.split)
    validate_predictions(entries)
    write_zip(entries, args.out)
    print(f"stcl submit: {len(entries)} predictions validated -> {args.out}")
    return 0
