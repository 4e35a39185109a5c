"""`stcl tables`: the paper's Tables 1-4 (+ final ensemble, chance level, per-class IoU) with this run's rows.

    stcl tables --metrics-dir results/evaluate [SEED2/results/evaluate ...] --out-dir results/tables
                [--params params.yaml]

Writes tables.md, tables.parquet and per_class_iou.png (see `stcl.metrics.tables`). With several metrics
folders (one per seed of the same run) every figure of ours is the mean ± std over them. Never imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-dir",
        required=True,
        type=Path,
        nargs="+",
        help="folder of `stcl evaluate` JSONs; several (one per seed): mean ± std",
    )
    p.add_argument("--out-dir", required=True, type=Path, help="output folder")
    p.add_argument(
        "--params",
        default=None,
        type=Path,
        help="params file: fills a metrics file's missing backbone / STCL dim and τ (optional)",
    )


def run(args: argparse.Namespace) -> int:
    from stcl.metrics.tables import load_runs, write_tables
    from stcl.params import load_params

    params = load_params(args.params) if args.params is not None else None
    paths = write_tables(args.metrics_dir, args.out_dir, params)
    models = [m["model"] for m in load_runs(args.metrics_dir)]
    seeds = f", {len(args.metrics_dir)} seeds" if len(args.metrics_dir) > 1 else ""
    print(
        f"tables of {len(models)} model(s) ({', '.join(models) or 'none'}){seeds} → "
        + ", ".join(str(p) for p in paths.values())
    )
    return 0
