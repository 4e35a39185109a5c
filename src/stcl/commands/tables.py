"""`stcl tables`: the paper's Tables 1-4 (+ final ensemble, chance level, per-class IoU) with this run's rows.

    stcl tables --metrics-dir results/metrics --out-dir results/tables [--params params.yaml]

Writes tables.md, tables.parquet and per_class_iou.png (see `stcl.metrics.tables`). Never imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-dir", required=True, type=Path, help="folder of `stcl evaluate` JSONs")
    p.add_argument("--out-dir", required=True, type=Path, help="output folder")
    p.add_argument(
        "--params",
        default=None,
        type=Path,
        help="params file: fills a metrics file's missing backbone / STCL dim and τ (optional)",
    )


def run(args: argparse.Namespace) -> int:
    from stcl.metrics.tables import load_metrics, write_tables
    from stcl.params import load_params

    params = load_params(args.params) if args.params is not None else None
    paths = write_tables(args.metrics_dir, args.out_dir, params)
    models = [m["model"] for m in load_metrics(args.metrics_dir)]
    print(
        f"tables of {len(models)} model(s) ({', '.join(models) or 'none'}) → "
        + ", ".join(str(p) for p in paths.values())
    )
    return 0
