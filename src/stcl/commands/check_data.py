"""`stcl check-data ROOT`: validate a whole dataset (VSPW, COCO panoptic or ADE20K) and report every problem."""

from __future__ import annotations

import argparse
from pathlib import Path

from stcl.data.checks import KINDS, check_dataset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", type=Path, help="dataset root (e.g. data/VSPW_480p, data/coco, data/ADEChallengeData2016)")
    p.add_argument("--kind", choices=KINDS, help="dataset type (default: detected from the layout)")
    p.add_argument("--workers", type=int, default=1, help="processes decoding files in parallel (default: 1)")
    p.add_argument("--json", type=Path, help="also write the report as JSON to this file")


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    report = check_dataset(args.root, args.kind, workers=args.workers)
    for problem in report.problems:
        print(problem)
    counts = ", ".join(f"{split}: " + " ".join(f"{v} {k}" for k, v in c.items()) for split, c in report.counts.items())
    status = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"check-data {report.kind} {report.root}: {status} ({counts})")
    if args.json:
        from stcl.atomic import write_json

        write_json(args.json, report.to_dict())
    return 0 if report.ok else 1
