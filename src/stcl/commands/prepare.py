"""`stcl prepare`: validate the datasets, write COCO semantic maps, the unlabeled frame list and a report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stcl.params import load_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file; reads the `data` section (default: params.yaml)")
    p.add_argument("--out", type=Path, default=Path("results/prepare"), help="output folder (default: results/prepare)")
    p.add_argument("--workers", type=int, default=1, help="processes for validation and conversion (default: 1)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stcl.data.prepare import prepare

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    data = load_params(args.params).data
    with tqdm(desc="coco semantic", unit="img", disable=not sys.stderr.isatty()) as bar:
        report = prepare(data, args.out, workers=args.workers, progress=bar.update)
    print(json.dumps({"out": str(args.out), **report}))
    return 0
