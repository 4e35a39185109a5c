"""`stcl evaluate`: mIoU, WIoU, VC8, VC16 and per-class IoU of a prediction folder, as the official VSPW scripts.

    stcl evaluate --gt-root VSPW_480p --pred-root predictions/val --out metrics.json [--details details.json]

``--out`` holds the headline figures only (mIoU, WIoU, VC8, VC16, pixel accuracy: what `dvc metrics
show/diff` compare). ``--details`` holds the whole record: per-class IoU, the GT pixel count of every class
(from which `stcl tables` derives the chance level), videos/frames counted, the model name (``--model``,
default the output file's stem) with its backbone and recipe from ``--params`` (when given), the metric
definitions, the paths and the run time. ``--flows`` (a `stcl flow` folder) adds TC, VSPW_code's TC_cal.py
figure, to both; without it TC is skipped with one printed line. Flows computed from another split, other
videos or frames than ``--gt-root``'s, or another RAFT file than the params' ``tc.raft_weights``, are refused. No params file is needed: a standalone tool
for any predictions in the VSPW layout. Never imports torch (TC reads the flows `stcl flow` stored).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt-root", required=True, type=Path, help="VSPW root (split files, data/<video>/mask/*.png)")
    p.add_argument("--pred-root", required=True, type=Path, help="predictions: <video>/<frame>.png, ids 0..123")
    p.add_argument("--split", default="val", help="split file of --gt-root listing the videos (default: val)")
    p.add_argument("--out", required=True, type=Path, help="headline metrics JSON to write (atomically)")
    p.add_argument("--details", type=Path, default=None, help="full record JSON: per-class IoU, counts, run details")
    p.add_argument("--model", help="model name recorded in the JSON (default: the stem of --out)")
    p.add_argument("--params", default=None, type=Path, help="params file: the model's recipe and evaluate section")
    p.add_argument("--workers", type=int, help="decoding processes (default: params evaluate.workers, else 2)")
    p.add_argument("--flows", type=Path, default=None, help="`stcl flow` folder: adds TC (VSPW_code TC_cal.py)")


def run(args: argparse.Namespace) -> int:
    from stcl.data.classes import VSPW_CLASSES
    from stcl.metrics.evaluate import DEFINITION, NUM_CLASSES, evaluate_dirs
    from stcl.metrics.io import atomic_write_json
    from stcl.params import EvaluateParams, load_params

    params = load_params(args.params) if args.params is not None else None
    settings = params.evaluate if params is not None else EvaluateParams()
    workers = args.workers if args.workers is not None else settings.workers
    model = args.model or args.out.stem
    start = time.perf_counter()
    tc = tc_result(args, params)  # first: flows that do not fit are refused before the long evaluation
    result = evaluate_dirs(
        args.gt_root,
        args.pred_root,
        split=args.split,
        num_classes=NUM_CLASSES,
        vc_lengths=settings.vc_lengths,
        workers=workers,
    )
    body = result.to_dict(VSPW_CLASSES)
    headline = {k: body[k] for k in body if k in ("mIoU", "WIoU", "pixel_accuracy") or k.startswith("VC")}
    tc_line = tc_fields(tc, args.flows, headline, body)
    seconds = time.perf_counter() - start
    if args.details is not None:
        from stcl.roles import model_info

        info = model_info(params, model) if params is not None else {}
        details = {
            "format": "stcl-metrics/1",
            "model": model,
            **({"backbone": info["backbone"]} if info else {}),
            "split": args.split,
            **headline,
            **{k: v for k, v in body.items() if k not in headline},
            "model_info": info,
            "definition": DEFINITION,
            "gt_root": str(args.gt_root),
            "pred_root": str(args.pred_root),
            "seconds": round(seconds, 3),
        }
        atomic_write_json(args.details, details)
    keys = ("mIoU", "WIoU", *[f"VC{n}" for n in result.vc], *(["TC"] if "TC" in headline else []), "pixel_accuracy")
    atomic_write_json(args.out, {k: headline[k] for k in keys})
    vc = "  ".join(f"VC{n} {result.vc[n]:.4f}" for n in result.vc)
    tc = f"  TC {headline['TC']:.4f}" if "TC" in headline else ""
    print(
        f"{model}: mIoU {result.mIoU:.4f}  WIoU {result.WIoU:.4f}  {vc}{tc}  "
        f"({result.videos} videos, {result.frames} frames, {seconds:.1f} s) → {args.out}"
    )
    print(tc_line)
    return 0


def tc_result(args: argparse.Namespace, params: Any) -> Any:
    """TC (`stcl.metrics.tc.TCResult`) of ``--pred-root`` over ``--flows``, or None without flows.

    The flows must be those of ``--split`` of ``--gt-root`` (and of the params' ``tc.raft_weights`` when set):
    `stcl.metrics.tc.evaluate_tc` refuses others in one line naming the flows index."""
    if args.flows is None:
        return None
    from stcl.metrics.tc import evaluate_tc

    raft = params.tc.raft_weights if params is not None else None
    return evaluate_tc(args.pred_root, args.flows, args.gt_root, args.split, raft)


def tc_fields(tc: Any, flows: Path | None, headline: dict[str, Any], body: dict[str, Any]) -> str:
    """Add TC to ``headline`` and its details to ``body`` when there is one; the line to print."""
    if tc is None:
        return "TC: skipped (no RAFT flows: set tc.raft_weights in params.yaml to a RAFT file, or pass --flows)"
    from stcl.data.classes import VSPW_CLASSES
    from stcl.metrics.tc import TC_DEFINITION

    headline["TC"] = tc.tc
    body["tc"] = {
        "TC": tc.tc,
        "videos": tc.videos,
        "pairs": tc.pairs,
        "video_limit": tc.video_limit,
        "flows": str(flows),
        "per_class_iou": {name: float(v) for name, v in zip(VSPW_CLASSES, tc.per_class_iou)},
        "definition": TC_DEFINITION,
    }
    which = "every video" if tc.video_limit == "all" else f"the first {tc.video_limit}"
    return f"TC: {tc.tc:.4f} over {tc.pairs} frame pairs of {tc.videos} videos ({which} of the split)"
