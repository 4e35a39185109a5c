"""Frames/s at 480×854 of the torch engine and the onnxruntime engine (`stcl export`), on CPU with 1 and 2
threads (and torch bf16 on a GPU when there is one), for the ResNet-18 and the Swin-T UperNet (random weights).

    .venv/bin/python benchmarks/export_speed.py [--models resnet18 swin_tiny] [--frames 2] [--threads 1 2]
        [--size 480 854] [--channels 512] [--json FILE] [--out DIR] [--no-cpu]
    .venv/bin/python benchmarks/export_speed.py --frames 1 --models resnet18 --size 96 160 --channels 64  # smoke

Rows, for each model: every engine × device (torch eager and onnxruntime on CPU with each ``--threads``;
torch on CUDA in bf16 autocast when ``torch.cuda.is_available()``) × pass, both passes through the one
inference path (`stcl.infer.frames.frame_probs`):

* **single**: the whole frame at scale 1, no flip (one window of the frame's size);
* **tta**: three of the paper's six ratios, ``TTA_SCALES`` (0.75, 1.0, 1.25) × flip (the tiny default's TTA
  when docs/results.md's figures were measured), with the paper's window (768×768, stride 512): at 480×854,
  10 windows per frame.

Also reported: each model's export time and ONNX file size. Figures are wall-clock frames/s of ``--frames``
frames after one warm-up frame; on a shared machine they are under load (say so when quoting them). The table
is printed as markdown; ``--json`` also writes everything (rewritten after each row, so an interrupted run
keeps the rows it measured). ``--out`` keeps the model and ONNX files (default: a temporary folder, removed).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stcl.atomic import write_json
from stcl.infer.frames import frame_probs
from stcl.infer.multiscale import TTA, tta_from_params
from stcl.params import Params

# --models name → model.backbone: the two UperNets
MODELS = {"resnet18": "resnet18", "swin_tiny": "swin_tiny_patch4_window7_224"}
PAPER_WINDOW = {"crop_size": (768, 768), "stride": (512, 512)}
TTA_SCALES = (0.75, 1.0, 1.25)  # the "tta" row: three of the paper's six ratios, × flip


def _fps(predict, tta: TTA, frames: list[np.ndarray], device: str) -> float:  # noqa: ANN001
    list(frame_probs({"m": predict}, tta, enumerate(frames[:1]), device))  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in frame_probs({"m": predict}, tta, enumerate(frames[1:]), device):
        pass
    if device == "cuda":
        torch.cuda.synchronize()
    return (len(frames) - 1) / (time.perf_counter() - start)


def _windows(tta: TTA, size: tuple[int, int]) -> int:
    """Windows the TTA cuts from one frame of ``size`` (all scales and flips)."""
    from stcl.infer.multiscale import scaled_size
    from stcl.infer.sliding import window_grid

    views = 2 if tta.flip else 1
    return views * sum(len(window_grid(*scaled_size(*size, s), tta.window)) for s in tta.scales)


def _arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS),
                   help="UperNets to measure: " + ", ".join(f"{k} ({v})" for k, v in MODELS.items()))
    p.add_argument("--frames", type=int, default=2, help="frames timed per row (after one warm-up frame)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU thread counts (torch and onnxruntime)")
    p.add_argument("--size", type=int, nargs=2, default=(480, 854), metavar=("H", "W"), help="frame size")
    p.add_argument("--channels", type=int, default=512, help="UperNet width (512 in the paper; aux head half)")
    p.add_argument("--no-cpu", action="store_true", help="only the CUDA rows (exports still run on the CPU)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here (JSON)")
    p.add_argument("--out", type=Path, default=None, help="keep the model and ONNX files here")
    args = p.parse_args()
    if args.frames < 1 or min(args.threads) < 1 or min(args.size) < 1:
        p.error("--frames, --threads and --size must be positive")
    return args


def main() -> None:
    args = _arguments()
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="export_speed.") as tmp:
            run(args, Path(tmp))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        run(args, args.out)


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import onnxruntime

    from stcl.data.classes import VSPW_CLASSES
    from stcl.infer.ensemble import load_models
    from stcl.infer.onnx_engine import load_onnx_models
    from stcl.models import build_segmentor, save_model
    from stcl.models.onnx_export import OPSET, export_onnx

    h, w = args.size
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(args.frames + 1)]
    infer = Params().infer
    ttas = {
        "single": tta_from_params(infer, scales=(1.0,), flip=False, crop_size=(h, w), stride=(h, w), batch_size=1),
        "tta": tta_from_params(infer, scales=TTA_SCALES, flip=True, batch_size=2, **PAPER_WINDOW),
    }
    cuda = torch.cuda.is_available()
    report: dict[str, Any] = {
        "size": [h, w], "frames": args.frames, "channels": args.channels, "opset": OPSET,
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
        "cpu": platform.processor() or platform.machine(), "gpu": torch.cuda.get_device_name() if cuda else None,
        "passes": {m: {"scales": list(t.scales), "flip": t.flip, "window": list(t.window.crop),
                       "stride": list(t.window.stride), "windows_per_frame": _windows(t, (h, w))}
                   for m, t in ttas.items()},
        "models": {}, "rows": [],
    }

    def add(model: str, engine: str, device: str, threads: int | None, dtype: str, mode: str, fps: float) -> None:
        report["rows"].append({"model": model, "engine": engine, "device": device, "threads": threads,
                               "dtype": dtype, "pass": mode, "fps": fps})
        print(f"{model} {engine} {device} x{threads or '-'} {dtype} {mode}: {fps:.3f} frames/s", flush=True)
        if args.json:
            write_json(args.json, report)

    for name in args.models:
        backbone = MODELS[name]
        params = Params().model.model_copy(update={"backbone": backbone, "channels": args.channels,
                                                   "aux_channels": max(args.channels // 2, 1), "drop_path": 0.0})
        torch.manual_seed(0)
        model = build_segmentor(params, len(VSPW_CLASSES), load_pretrained=False)
        pt = save_model(out / f"{backbone}.pt", model, model_params=params, num_classes=len(VSPW_CLASSES),
                        proj_dim=None, label_space="vspw", class_names=VSPW_CLASSES)
        del model
        result = export_onnx(pt, out / f"{backbone}.onnx", infer)
        report["models"][name] = {"backbone": backbone, "export_seconds": result.seconds, "onnx_bytes": result.bytes,
                                  "model_pt_bytes": pt.stat().st_size, "export_example": list(result.example)}
        print(f"{name} ({backbone}): exported in {result.seconds:.1f} s, {result.bytes / 1e6:.1f} MB", flush=True)
        for threads in [] if args.no_cpu else args.threads:
            torch.set_num_threads(threads)
            engines = {"torch": load_models({"m": pt})["m"],
                       "onnxruntime": load_onnx_models({"m": out / f"{backbone}.onnx"}, threads=threads)["m"]}
            for engine, predict in engines.items():
                for mode, tta in ttas.items():
                    add(name, engine, "cpu", threads, "float32", mode, _fps(predict, tta, frames, "cpu"))
            del engines
        if cuda:
            predict = load_models({"m": pt}, "cuda", "bf16")["m"]
            for mode, tta in ttas.items():
                add(name, "torch", "cuda", None, "bf16", mode, _fps(predict, tta, frames, "cuda"))
            del predict
            torch.cuda.empty_cache()

    print(f"\n{h}x{w}, {args.frames} frame(s) timed per row, UperNet {args.channels} channels, random weights; "
          f"cpu: {report['cpu']}" + (f"; gpu: {report['gpu']}" if cuda else ""))
    print("\n| model | engine | device | threads | dtype | pass | windows/frame | frames/s |\n|---|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        print(f"| {r['model']} | {r['engine']} | {r['device']} | {r['threads'] or '-'} | {r['dtype']} | {r['pass']} | "
              f"{report['passes'][r['pass']]['windows_per_frame']} | {r['fps']:.3f} |")
    print("\n| model | export s | .onnx MB | model.pt MB |\n|---|---|---|---|")
    for name, m in report["models"].items():
        print(f"| {name} | {m['export_seconds']:.1f} | {m['onnx_bytes'] / 1e6:.1f} | {m['model_pt_bytes'] / 1e6:.1f} |")
    if args.json:
        write_json(args.json, report)
        print(f"\n-> {args.json}")
    return report


if __name__ == "__main__":
    main()
