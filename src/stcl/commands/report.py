"""`stcl report`: the figures of a run (curves, per-class IoU, VC per video, pseudo labels, qualitative views)
and a static HTML page that shows them.

    stcl report --out-dir results/report --metrics-dir results/metrics \
        --train-log train_stcl=results/models/train_stcl/dvclive --train-log train_ade=... \
        --gt-root data/VSPW_480p --split val --pred-root results/predictions/ensemble/val --pred-model ensemble \
        --pseudo-stats results/pseudo/stats.json [--flows results/flow/val]

Every input is optional; a section whose inputs are not given is left out. Open ``<out-dir>/index.html``
in a browser (nothing is fetched from the network). The figures are also in ``snakemake --report``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _stage_folder(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected STAGE=DVCLIVE_DIR, got {text!r}")
    return name, Path(folder)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", required=True, help="where index.html and the figures go")
    p.add_argument("--metrics-dir", default=None, help="metrics JSONs of `stcl evaluate` (one per model)")
    p.add_argument("--train-log", dest="train_logs", action="append", type=_stage_folder, default=[],
                   metavar="STAGE=DVCLIVE_DIR", help="a stage's dvclive folder; repeat per stage")
    p.add_argument("--gt-root", default=None, help="VSPW-layout root with the frames and GT masks")
    p.add_argument("--split", default="val", help="split of --gt-root for VC per video and the views (default val)")
    p.add_argument("--pred-root", default=None, help="predictions <pred-root>/<video>/<frame>.png of that split")
    p.add_argument("--pred-model", default="ensemble", help="name of the model behind --pred-root (labels)")
    p.add_argument("--pseudo-stats", default=None, help="statistics JSON of `stcl pseudo-label --gather`")
    p.add_argument("--max-videos", type=int, default=8, help="videos with qualitative views (default 8, split order)")
    p.add_argument("--title", default="stcl run report", help="page title")
    p.add_argument("--flows", default=None, help="`stcl flow` folder: the TC view of one video (needs --pred-root)")


def run(args: argparse.Namespace) -> int:
    from stcl.report.page import ReportInputs, build_report

    if (args.gt_root is None) != (args.pred_root is None):
        raise ValueError("--gt-root and --pred-root go together (VC per video and the qualitative views need both)")
    if args.max_videos < 0:
        raise ValueError(f"--max-videos must be >= 0, got {args.max_videos}")
    stages = dict(args.train_logs)
    if len(stages) != len(args.train_logs):
        raise ValueError("--train-log: a stage is given twice")
    inputs = ReportInputs(
        metrics_dir=Path(args.metrics_dir) if args.metrics_dir else None,
        train_logs=stages,
        gt_root=Path(args.gt_root) if args.gt_root else None,
        split=args.split,
        pred_root=Path(args.pred_root) if args.pred_root else None,
        pred_model=args.pred_model,
        pseudo_stats=Path(args.pseudo_stats) if args.pseudo_stats else None,
        max_videos=args.max_videos,
        title=args.title,
        flows=Path(args.flows) if args.flows else None,
    )
    index = build_report(inputs, args.out_dir, progress=sys.stderr.isatty())
    print(f"stcl report: open {index} in a browser")
    return 0
