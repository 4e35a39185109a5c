"""`stcl predict`: run trained models on your own video (or folder of frames); label PNGs + an overlay video.

    stcl predict clip.mp4 --model results/models/train_student/model.pt [--model B.pt ...] --out out/clip
    stcl predict frames/ --model M.pt --out out/frames --fps 15 --side-by-side

Writes ``<out>/labels/<8-digit>.png`` (palette PNG of class ids, frame size), ``<out>/overlay.mp4`` (the
input's size and frame rate, class colours blended over the frame with a legend of the classes present)
and ``<out>/predict.json``. Test-time augmentation and ensembling are those of `stcl infer`: scales, flip,
sliding window, windows per batch and amp default to ``params.infer`` of ``--params`` (built-in defaults
when the default params.yaml is absent) and each can be overridden here. Resumable: a rerun reuses the
label PNGs already written. Exit codes: 0 done, 1 bad input (one line naming the file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file (mp4, mov, avi, mkv, webm, ...) or folder of frames (jpg/png)")
    p.add_argument("--model", dest="models", action="append", required=True, metavar="MODEL_PT",
                   help="model.pt file (an .onnx file of stcl export with --engine onnxruntime); repeat for an ensemble")
    p.add_argument("--engine", choices=("torch", "onnxruntime"), default="torch",
                   help="what runs each window: torch (model.pt) or onnxruntime (CPU; TTA defaults from the file)")
    p.add_argument("--out", required=True, help="output folder (labels/, overlay.mp4, predict.json)")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="one ensemble weight per model")
    p.add_argument("--params", default=None, help="params file for the infer defaults (default: ./params.yaml if present)")
    p.add_argument("--scales", nargs="+", type=float, default=None, help="TTA scales (default: params infer.scales)")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="add horizontal flips")
    flip.add_argument("--no-flip", dest="flip", action="store_false", help="no horizontal flips")
    p.add_argument("--crop-size", nargs=2, type=int, default=None, metavar=("H", "W"), help="sliding window size")
    p.add_argument("--stride", nargs=2, type=int, default=None, metavar=("H", "W"), help="sliding window stride")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default=None, help="autocast of the forward pass")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate of a frame folder's overlay (default 15)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the class colours in the overlay")
    p.add_argument("--no-legend", dest="legend", action="store_false", help="no legend of the classes present")
    p.add_argument("--side-by-side", action="store_true", help="raw frame left of the overlay (twice the width)")


def _infer_params(path: str | None, engine: str = "torch", first_model: str | None = None):
    from stcl.params import Params, load_params

    if path is None and engine == "onnxruntime":  # the exported file carries the TTA of its params
        from stcl.infer.onnx_engine import read_metadata

        tta = read_metadata(first_model)["tta"]
        given = {k: tuple(v) if isinstance(v, list) else v for k, v in tta.items()}
        return Params().infer.model_copy(update=given)
    if path is None:
        return (load_params("params.yaml") if Path("params.yaml").is_file() else Params()).infer
    return load_params(path).infer


def run(args: argparse.Namespace) -> int:
    import functools

    import torch

    from stcl.data.classes import VSPW_CLASSES
    from stcl.infer.ensemble import normalized_weights
    from stcl.infer.onnx_engine import load_predictors
    from stcl.infer.multiscale import tta_from_params
    from stcl.infer.video import open_source, predict_video
    from stcl.report.overlay import render_overlay
    from stcl.allocator import keep_large_blocks

    keep_large_blocks()  # the frame loop's large blocks stay mapped (stcl.allocator)

    tta = tta_from_params(
        _infer_params(args.params, args.engine, args.models[0]),
        scales=args.scales,
        flip=args.flip,
        crop_size=args.crop_size,
        stride=args.stride,
        batch_size=args.batch_size,
        amp=args.amp,
    )
    weights = normalized_weights(len(args.models), args.weights)
    info = open_source(args.input, fps=args.fps)  # validate the input before loading any model
    default = "cuda" if torch.cuda.is_available() and args.engine == "torch" else "cpu"
    device = torch.device(args.device or default)
    named = {f"model{i}": m for i, m in enumerate(args.models)}
    models = load_predictors(named, device, tta.amp, args.engine, label_space="vspw")
    options = {
        "models": [str(Path(m).resolve()) for m in args.models],
        "model_mtime_ns": [Path(m).stat().st_mtime_ns for m in args.models],
        "weights": args.weights,
        "scales": list(tta.scales),
        "flip": tta.flip,
        "crop_size": list(tta.window.crop),
        "stride": list(tta.window.stride),
        "amp": tta.amp,
        "engine": args.engine,
        "alpha": args.alpha,
        "legend": args.legend,
        "side_by_side": args.side_by_side,
    }
    render = functools.partial(
        render_overlay, class_names=VSPW_CLASSES, alpha=args.alpha, legend=args.legend,
        side_by_side_raw=args.side_by_side,
    )
    overlay_size = (info.height, info.width * (2 if args.side_by_side else 1))
    result = predict_video(
        models, weights, tta, info, args.out, render=render, overlay_size=overlay_size, options=options,
        device=device, progress=sys.stderr.isatty(),
    )
    if result.skipped:
        print(f"stcl predict: {args.out} already complete ({result.frames} frames)")
    else:
        print(
            f"stcl predict: {result.frames} frames ({result.computed} predicted, {result.reused} reused), "
            f"{info.width}x{info.height} at {float(info.fps):.3g} fps -> {result.overlay}, {result.labels}/"
        )
    return 0
