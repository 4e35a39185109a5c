"""Inference throughput: multi-scale + flip TTA with sliding windows, batched across views vs one view at a time.

    .venv/bin/python benchmarks/inference_speed.py [--params params.yaml] [--frames 4] [--threads 2]

CPU: the default small model of ``params.model`` (random init; speed does not depend on the weights) on
frames of the embedded size (``params.synth``), window/stride/batch from ``params.infer``, the paper's six
scales [0.5 .. 1.75] with flip. Both modes run in the same process on the same frames and must give the same
probabilities (checked). GPU (only if CUDA is available): UperNet Swin-L at 480×854 with the paper's
768² window, stride 512; otherwise prints "no GPU".
"""

from __future__ import annotations

import argparse
import time

import torch

from stcl.infer.multiscale import TTA, tta_probs
from stcl.infer.sliding import Window
from stcl.models import build_segmentor
from stcl.params import ModelParams, load_params

PAPER_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _windows(tta: TTA, height: int, width: int) -> int:
    from stcl.infer.multiscale import scaled_size
    from stcl.infer.sliding import pad_to_window, window_grid

    total = 0
    for s, _ in tta.views:
        ph, pw = pad_to_window(torch.zeros(1, *scaled_size(height, width, s)), tta.window).shape[-2:]
        total += len(window_grid(ph, pw, tta.window))
    return total


def measure(predict, frames: list[torch.Tensor], tta: TTA, device: torch.device) -> dict[str, float]:
    """Frames/s of `tta_probs` with batch_views True and False, alternating frame by frame so both modes
    see the same machine load (one warm-up frame each, not timed)."""
    seconds = {True: 0.0, False: 0.0}
    max_diff = 0.0
    for mode in (True, False):
        tta_probs(predict, frames[0], tta, batch_views=mode)
    for frame in frames:
        out = {}
        for mode in (True, False):
            _sync(device)
            start = time.perf_counter()
            out[mode] = tta_probs(predict, frame, tta, batch_views=mode)
            _sync(device)
            seconds[mode] += time.perf_counter() - start
        max_diff = max(max_diff, (out[True] - out[False]).abs().max().item())
    return {
        "batched": len(frames) / seconds[True],
        "one_view_at_a_time": len(frames) / seconds[False],
        "max_prob_diff": max_diff,
    }


def _report(title: str, res: dict[str, float], tta: TTA, h: int, w: int) -> None:
    print(
        f"{title}: {h}x{w}, {len(tta.scales)} scales x {'flip' if tta.flip else 'no flip'}, "
        f"window {tta.window.crop} stride {tta.window.stride}, {_windows(tta, h, w)} windows/frame, "
        f"batch {tta.batch_size}"
    )
    b, o = res["batched"], res["one_view_at_a_time"]
    print(f"  batched across views: {b:.3f} frames/s")
    print(
        f"  one view at a time:   {o:.3f} frames/s   (speed-up {b / o:.2f}x, max |prob diff| {res['max_prob_diff']:.2e})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--frames", type=int, default=4, help="timed frames per mode")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--gpu-frames", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)

    cpu = torch.device("cpu")
    model = build_segmentor(params.model, 124).eval()
    h, w = params.synth.height, params.synth.width
    gen = torch.Generator().manual_seed(0)
    frames = [torch.rand((3, h, w), generator=gen) * 255 for _ in range(args.frames)]
    tta = TTA(PAPER_SCALES, True, Window(params.infer.crop_size, params.infer.stride), params.infer.batch_size)
    with torch.inference_mode():
        res = measure(model.predict, frames, tta, cpu)
    _report(
        f"CPU ({args.threads} threads), {params.model.backbone} UperNet (channels {params.model.channels})",
        res,
        tta,
        h,
        w,
    )

    if not torch.cuda.is_available():
        print("GPU: no GPU")
        return
    dev = torch.device("cuda")
    swin = ModelParams(backbone="swin_large_patch4_window12_384", channels=512, aux_channels=256, drop_path=0.3)
    big = build_segmentor(swin, 124, load_pretrained=False).to(dev).eval()
    frames = [torch.rand((3, 480, 854), generator=gen).to(dev) * 255 for _ in range(args.gpu_frames)]
    tta = TTA(PAPER_SCALES, True, Window((768, 768), (512, 512)), batch_size=8)

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return big.predict(x).float()

    with torch.inference_mode():
        res = measure(predict, frames, tta, dev)
    _report(f"GPU {torch.cuda.get_device_name(dev)}, Swin-L UperNet bf16", res, tta, 480, 854)


if __name__ == "__main__":
    main()
