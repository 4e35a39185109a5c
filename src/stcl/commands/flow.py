"""`stcl flow`: RAFT flows of a split's videos for the TC metric, computed once for every model.

    stcl flow --vspw-root data/VSPW_480p --split val --weights raft-things.pth --out results/flow/val \
        [--videos 100|all] [--params params.yaml]

``--weights``: the official ``raft-things.pth`` (VSPW_code / princeton-vl layout) or torchvision's
``raft_large_C_T_V1`` file, loaded strictly; nothing is downloaded. ``--videos``: the first N videos of the
split file (TC_cal.py: 100) or ``all``; default params ``tc.videos``. Writes the folder `stcl.flow.cache`
describes (warp source maps per video + ``flows.json``), whole or not at all; `stcl evaluate --flows` reads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def _limit(text: str) -> int | str:
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'all', got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vspw-root", required=True, type=Path, help="VSPW root (split files, data/<video>/origin/*.jpg)")
    p.add_argument("--split", default="val", help="split file listing the videos (default: val)")
    p.add_argument("--weights", type=Path, help="RAFT weights file (default: params tc.raft_weights)")
    p.add_argument("--out", required=True, type=Path, help="flows folder to write")
    p.add_argument("--videos", type=_limit, help="first N videos of the split, or all (default: params tc.videos)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: params tc.device")
    p.add_argument("--params", default=None, type=Path, help="params file (its tc section)")


def run(args: argparse.Namespace) -> int:
    from stcl.flow.cache import compute_flows
    from stcl.params import TCParams, load_params

    tc = load_params(args.params).tc if args.params is not None else TCParams()
    weights = args.weights or tc.raft_weights
    if weights is None:
        raise ValueError("no RAFT weights file: give --weights or set tc.raft_weights in the params file")
    limit = args.videos if args.videos is not None else tc.videos
    done = compute_flows(args.vspw_root, weights, args.out, args.split, limit, args.device or tc.device)
    print(f"flow: {done.pairs} frame pairs of {done.videos} {args.split} videos ({done.seconds:.1f} s) → {args.out}")
    return 0
