"""`stcl prepare`: validate the datasets, write COCO semantic maps, the unlabeled frame list and a report.

    stcl prepare --params params.yaml --vspw data/VSPW_480p --coco data/coco --ade data/ADEChallengeData2016 \
        --out results/prepare

A dataset root not given on the command line is the params file's (``data.vspw_root`` ...); the unlabeled
pool is ``data.unlabeled``. The library code is `stcl.data.prepare`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stcl.params import load_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file; reads the `data` section (default: params.yaml)")
    p.add_argument("--out", type=Path, required=True, help="output folder: coco_semantic/, unlabeled.txt, report.json")
    p.add_argument("--vspw", type=Path, default=None, help="VSPW root (default: params data.vspw_root)")
    p.add_argument("--coco", type=Path, default=None, help="COCO panoptic root (default: params data.coco_root)")
    p.add_argument("--ade", type=Path, default=None, help="ADE20K root (default: params data.ade_root)")
    p.add_argument("--workers", type=int, default=1, help="processes for validation and conversion (default: 1)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stcl.data.prepare import prepare

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    data = load_params(args.params).data
    roots = {"vspw_root": args.vspw, "coco_root": args.coco, "ade_root": args.ade}
    data = data.model_copy(update={k: v for k, v in roots.items() if v is not None})
    with tqdm(desc="coco semantic", unit="img", disable=not sys.stderr.isatty()) as bar:
        report = prepare(data, args.out, workers=args.workers, progress=bar.update)
    print(json.dumps({"out": str(args.out), **report}))
    return 0
