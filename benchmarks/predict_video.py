"""`stcl predict` throughput on an 854×480 video: frames per second, end to end, as a user runs it.

    .venv/bin/python benchmarks/predict_video.py [--frames 12] [--threads 2] [--params params.yaml]

Writes a synthetic 854×480, 15 fps H.264 clip (moving textured shapes) and a model file of the default tiny
architecture (``params.model``, random init: speed does not depend on the weights) into a temporary folder,
then runs ``stcl predict`` as a subprocess (``OMP_NUM_THREADS``/torch threads = ``--threads``) in three
settings and prints, per setting:

* wall s, frames/s: the whole command (start-up and model loading included) on the clip;
* s/frame (loop): wall time per frame of the frame loop (the clip's run minus a one-frame run, per extra frame);
* CPU s/frame: the command's CPU time (user + system) per frame of the loop, and the frames/s it implies when
  ``--threads`` cores are free (frames / (CPU s / threads)). On a shared machine wall time depends on the load
  (printed), CPU time much less.

Settings:

* ``params``: ``params.infer`` as it is (scales, flip, sliding window of the tiny default);
* ``1 scale, no flip``: the same window, scale 1.0 only;
* ``1 scale, whole frame``: scale 1.0, no flip, one 480×854 window per frame.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def synthetic_clip(path: Path, frames: int, height: int = 480, width: int = 854) -> Path:
    """An H.264 clip of moving textured rectangles over a gradient (something for the decoder to do)."""
    import av

    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(15))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            img = base.copy()
            for k in range(4):
                y, x = (40 + 60 * k + 5 * t) % (height - 100), (80 * k + 11 * t) % (width - 160)
                img[y : y + 100, x : x + 160] = ((xx[:100, :160] // 8 + yy[:100, :160] // 8 + k) % 2 * 200)[..., None]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def tiny_model(path: Path, params_file: str) -> Path:
    import torch

    from stcl.data.classes import VSPW_CLASSES
    from stcl.models import build_segmentor, save_model
    from stcl.params import load_params

    torch.manual_seed(0)
    mp = load_params(params_file).model
    model = build_segmentor(mp, 124, load_pretrained=False)
    return save_model(path, model, model_params=mp, num_classes=124, proj_dim=None, label_space="vspw",
                      class_names=VSPW_CLASSES)


def run_predict(video: Path, model: Path, out: Path, extra: list[str], threads: int, params: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `stcl predict` run."""
    import resource

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    stcl = str(Path(sys.executable).parent / "stcl")
    cmd = [stcl, "predict", str(video), "--model", str(model), "--out", str(out), "--device", "cpu",
           "--params", params, *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"stcl predict failed ({result.returncode}): {result.stderr.strip()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="frames of the clip")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of stcl predict")
    parser.add_argument("--params", default="params.yaml", help="params file (model + infer defaults)")
    args = parser.parse_args()

    from stcl.params import load_params

    infer = load_params(args.params).infer
    settings = [
        ("1 scale, no flip, whole frame", ["--scales", "1.0", "--no-flip", "--crop-size", "480", "854",
                                            "--stride", "480", "854", "--batch-size", "1"]),
        ("1 scale, no flip, params window", ["--scales", "1.0", "--no-flip"]),
        (f"params: scales {list(infer.scales)}, flip {infer.flip}, window {list(infer.crop_size)}", []),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = synthetic_clip(tmp / "clip.mp4", args.frames)
        model = tiny_model(tmp / "model.pt", args.params)
        one = synthetic_clip(tmp / "one.mp4", 1)
        print(f"stcl predict on {args.frames} frames of 854x480 H.264, tiny model ({load_params(args.params).model.backbone}),"
              f" {args.threads} CPU threads, torch {__import__('torch').__version__};"
              f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        print(f"{'setting':58s} {'wall s':>7s} {'frames/s':>9s} {'s/frame':>8s} {'CPU s/frame':>12s} {'frames/s @free':>15s}")
        for name, extra in settings:
            wall1, cpu1 = run_predict(one, model, tmp / "o1", extra, args.threads, args.params)  # start-up + 1 frame
            wall, cpu = run_predict(video, model, tmp / "o", extra, args.threads, args.params)
            extra_frames = max(args.frames - 1, 1)
            per_frame, cpu_frame = (wall - wall1) / extra_frames, (cpu - cpu1) / extra_frames
            print(f"{name:58s} {wall:7.1f} {args.frames / wall:9.3f} {per_frame:8.2f} {cpu_frame:12.2f}"
                  f" {args.threads / cpu_frame:15.3f}   (load {os.getloadavg()[0]:.1f})", flush=True)
            for d in (tmp / "o", tmp / "o1"):
                subprocess.run(["rm", "-rf", str(d)], check=True)


if __name__ == "__main__":
    main()
