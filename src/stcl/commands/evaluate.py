"""`stcl evaluate`: mIoU, WIoU, VC8, VC16 and per-class IoU of a prediction folder, as the official VSPW scripts.

    stcl evaluate --gt-root data/VSPW_480p --pred-root results/predictions/train_stcl/val \\
        --split val --out results/metrics/train_stcl.json

The JSON also records what the tables need to label the row: the model name (``--model``, default the
output file's stem), its backbone and recipe from params.yaml, videos/frames counted, and the GT pixel count
of every class (from which `stcl tables` derives the chance level). Never imports torch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "model_info"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt-root", required=True, type=Path, help="VSPW root (split files, data/<video>/mask/*.png)")
    p.add_argument("--pred-root", required=True, type=Path, help="predictions: <video>/<frame>.png, ids 0..123")
    p.add_argument("--split", default="val", help="split file of --gt-root listing the videos (default: val)")
    p.add_argument("--out", required=True, type=Path, help="metrics JSON to write (atomically)")
    p.add_argument("--model", help="model name recorded in the JSON (default: the stem of --out)")
    p.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")
    p.add_argument("--workers", type=int, help="decoding processes (default: params evaluate.workers)")


def model_info(params: Any, model: str) -> dict[str, Any]:
    """Backbone and recipe of ``model`` from params (stage name, teacher, ensemble, or anything else)."""
    from stcl.params import TRAIN_STAGES

    info: dict[str, Any] = {"backbone": params.model.backbone}
    if model in TRAIN_STAGES:
        stage = params.stage(model)
        info["datasets"] = [d.name for d in stage.datasets]
        info["init"] = stage.init
        info["stcl"] = {"enabled": stage.stcl.enabled, "dim": stage.stcl.dim, "tau": stage.stcl.tau}
    elif model == "teacher":
        info["members"] = list(params.teacher.members)
    elif model == "ensemble":
        info["members"] = list(params.infer.models)
    return info


def run(args: argparse.Namespace) -> int:
    from stcl.data.classes import VSPW_CLASSES
    from stcl.metrics.evaluate import DEFINITION, NUM_CLASSES, evaluate_dirs
    from stcl.metrics.io import atomic_write_json
    from stcl.params import load_params

    params = load_params(args.params)
    workers = args.workers if args.workers is not None else params.evaluate.workers
    model = args.model or args.out.stem
    start = time.perf_counter()
    result = evaluate_dirs(
        args.gt_root,
        args.pred_root,
        split=args.split,
        num_classes=NUM_CLASSES,
        vc_lengths=params.evaluate.vc_lengths,
        workers=workers,
    )
    seconds = time.perf_counter() - start
    body = result.to_dict(VSPW_CLASSES)
    info = model_info(params, model)
    out = {
        "format": "stcl-metrics/1",
        "model": model,
        "backbone": info["backbone"],
        "split": args.split,
        **{k: body.pop(k) for k in list(body) if k in ("mIoU", "WIoU") or k.startswith("VC")},
        **body,
        "model_info": info,
        "definition": DEFINITION,
        "gt_root": str(args.gt_root),
        "pred_root": str(args.pred_root),
        "seconds": round(seconds, 3),
    }
    atomic_write_json(args.out, out)
    vc = "  ".join(f"VC{n} {result.vc[n]:.4f}" for n in result.vc)
    print(
        f"{model}: mIoU {result.mIoU:.4f}  WIoU {result.WIoU:.4f}  {vc}  "
        f"({result.videos} videos, {result.frames} frames, {seconds:.1f} s) → {args.out}"
    )
    return 0
