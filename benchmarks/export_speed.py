"""Frames/s at 480×854 of the torch engine and the onnxruntime engine (`stcl export`), on CPU with 1 and 2
threads (and torch bf16 on a GPU when there is one), for ResNet-18 and Swin-T UperNet (random weights).

    .venv/bin/python benchmarks/export_speed.py [--frames 2] [--channels 512] [--out /tmp/export_speed]

Two passes per frame, both through the one inference path (`stcl.infer.frames.frame_probs`):

* **single**: the whole frame at scale 1, no flip (one window of 480×854);
* **tta**: ``params.infer``'s scales and flip (0.75, 1.0, 1.25 × flip) with the paper's window
  (768×768, stride 512): 10 windows per frame.

Also printed: each model's export time and file size. Figures are wall-clock frames/s of the listed frames
after one warm-up frame; on a shared machine they are under load (say so when quoting them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from stcl.infer.frames import frame_probs
from stcl.infer.multiscale import tta_from_params
from stcl.params import Params


def _fps(predict, tta, frames, device: str = "cpu") -> float:  # noqa: ANN001
    list(frame_probs({"m": predict}, tta, enumerate(frames[:1]), device))  # warm-up
    start = time.perf_counter()
    for _ in frame_probs({"m": predict}, tta, enumerate(frames[1:]), device):
        pass
    if device == "cuda":
        torch.cuda.synchronize()
    return (len(frames) - 1) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=2, help="frames timed (after one warm-up frame)")
    p.add_argument("--channels", type=int, default=512, help="UperNet width (512 in the paper)")
    p.add_argument("--out", default="/tmp/export_speed", help="folder for the model and ONNX files")
    args = p.parse_args()
    from stcl.data.classes import VSPW_CLASSES
    from stcl.infer.ensemble import load_models
    from stcl.infer.onnx_engine import load_onnx_models
    from stcl.models import build_segmentor, save_model
    from stcl.models.onnx_export import export_onnx

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 854, 3), dtype=np.uint8) for _ in range(args.frames + 1)]
    infer = Params().infer
    ttas = {
        "single": tta_from_params(infer, scales=(1.0,), flip=False, crop_size=(480, 854), stride=(480, 854), batch_size=1),
        "tta": tta_from_params(infer, crop_size=(768, 768), stride=(512, 512), batch_size=2),
    }
    rows = []
    for backbone in ("resnet18", "swin_tiny_patch4_window7_224"):
        params = Params().model.model_copy(update={"backbone": backbone, "channels": args.channels,
                                                   "aux_channels": args.channels // 2, "drop_path": 0.0})
        torch.manual_seed(0)
        model = build_segmentor(params, len(VSPW_CLASSES), load_pretrained=False)
        pt = save_model(out / f"{backbone}.pt", model, model_params=params, num_classes=len(VSPW_CLASSES),
                        proj_dim=None, label_space="vspw", class_names=VSPW_CLASSES)
        result = export_onnx(pt, out / f"{backbone}.onnx", infer)
        print(f"{backbone}: exported in {result.seconds:.0f} s, {result.bytes / 1e6:.1f} MB", flush=True)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            engines = {"torch": load_models({"m": pt})["m"],
                       "onnxruntime": load_onnx_models({"m": out / f"{backbone}.onnx"}, threads=threads)["m"]}
            for engine, predict in engines.items():
                for mode, tta in ttas.items():
                    rows.append((backbone, f"{engine} cpu x{threads}", mode, _fps(predict, tta, frames)))
                    print(*rows[-1][:3], f"{rows[-1][3]:.3f}", flush=True)
        if torch.cuda.is_available():
            predict = load_models({"m": pt}, "cuda", "bf16")["m"]
            for mode, tta in ttas.items():
                rows.append((backbone, "torch cuda bf16", mode, _fps(predict, tta, frames, "cuda")))
    print("\n| model | engine | pass | frames/s |\n|---|---|---|---|")
    for backbone, engine, mode, fps in rows:
        print(f"| {backbone} | {engine} | {mode} | {fps:.3f} |")


if __name__ == "__main__":
    main()
