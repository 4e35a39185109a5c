"""Inference throughput before and after mmseg's window semantics, beside a plain loop over mmseg's own
``slide_inference``, on the same model, frames and TTA (six scales [0.5 .. 1.75] with flip).

    .venv/bin/python benchmarks/inference_speed.py [--params params.yaml] [--frames 8] [--frames-768 2] [--threads 1]
        [--glibc-defaults]

The process runs with the allocator settings of the inference commands (`stcl.allocator`) unless
``--glibc-defaults``; the three methods share them either way.

Three ways to compute one frame's TTA probabilities:

* **before**: the sliding window stcl used until this change, kept here only as the reference: a view
  smaller than the crop is padded (bottom/right, 0) to the crop, so that the windows of all views of a
  frame are crop-sized and share batches of ``infer.batch_size``; the padding's logits are dropped.
* **after**: `stcl.infer.multiscale.tta_probs` as the frame loop (`stcl.infer.frames.frame_probs`) runs
  it: windows of ``min(crop, size)``, never padded; the windows of one view of `frames_per_group`
  consecutive frames share batches.
* **mmseg loop**: per frame and view, resize, flip, mmseg 1.2.2's ``EncoderDecoder.slide_inference``
  (one forward per window), resize the logits back, softmax, flip back, average (mmseg 0.x ``aug_test``
  order). ``slide_inference`` is mmseg's own function, called on a stand-in segmentor whose
  ``encode_decode`` is our model's ``predict`` (the same weights for all three).

Two geometries on CPU, both with the small default encoder of ``params.model`` (random weights: speed does
not depend on them): the toy window (``params.synth`` frame, ``params.infer`` crop/stride) and the paper's
(480×854 frames, crop 768, stride 512). Printed per geometry: windows and pixels per frame, frames/s of the
three, and max |Δ probs| / argmax agreement of before and after against the mmseg loop.
"""

from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor

from stcl.infer.multiscale import TTA, frames_per_group, scaled_size, tta_from_params, tta_probs
from stcl.infer.sliding import Window, run_predictor, window_grid, window_shape
from stcl.models import build_segmentor
from stcl.params import load_params

PAPER_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a shared CPU: threads sleep instead of spinning


# --- before: the padded sliding window (kept only here, as the reference of this benchmark) ---------------
def _padded_canvas(view: Tensor, window: Window) -> dict:
    h, w = view.shape[-2:]
    ph, pw = max(window.crop[0], h), max(window.crop[1], w)
    padded = F.pad(view, (0, pw - w, 0, ph - h), value=0.0)
    return {"image": padded, "size": (h, w), "corners": window_grid(ph, pw, window), "sum": None, "count": None}


def before_tta_probs(predict, image: Tensor, tta: TTA) -> Tensor:
    """(3, H, W) → (C, H, W): every view padded to at least the crop, crop-sized windows of all views batched."""
    size = tuple(image.shape[-2:])
    views = tta.views
    canvases = []
    for s, f in views:
        v = F.interpolate(image[None], size=scaled_size(*size, s), mode="bilinear", align_corners=False)[0]
        canvases.append(_padded_canvas(v.flip(-1) if f else v, tta.window))
    jobs = [(i, c) for i, cv in enumerate(canvases) for c in cv["corners"]]
    pending = [len(cv["corners"]) for cv in canvases]
    total = None
    (ch, cw) = tta.window.crop
    for start in range(0, len(jobs), tta.batch_size):
        chunk = jobs[start : start + tta.batch_size]
        out = run_predictor(predict, torch.stack([canvases[i]["image"][:, y : y + ch, x : x + cw] for i, (y, x) in chunk]))
        for k, (i, (y, x)) in enumerate(chunk):
            cv = canvases[i]
            if cv["sum"] is None:
                cv["sum"] = out.new_zeros((out.shape[1], *cv["image"].shape[-2:]))
                cv["count"] = out.new_zeros((1, *cv["image"].shape[-2:]))
            cv["sum"][:, y : y + ch, x : x + cw] += out[k]
            cv["count"][:, y : y + ch, x : x + cw] += 1
            pending[i] -= 1
            if pending[i] == 0:
                h, w = cv["size"]
                logits = (cv["sum"] / cv["count"])[:, :h, :w]
                logits = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
                p = logits.softmax(0)
                p = p.flip(-1) if views[i][1] else p
                total = p if total is None else total + p
                cv["sum"] = cv["count"] = None
    return total / len(views)


# --- mmseg: its own slide_inference, one view at a time ----------------------------------------------------
def mmseg_tta_probs(predict, image: Tensor, tta: TTA, num_classes: int) -> Tensor:
    from mmengine.config import ConfigDict
    from mmseg.models.segmentors import EncoderDecoder

    seg = SimpleNamespace(
        test_cfg=ConfigDict(mode="slide", crop_size=tta.window.crop, stride=tta.window.stride),
        out_channels=num_classes,
        encode_decode=lambda x, metas: predict(x),
    )
    size = tuple(image.shape[-2:])
    total = None
    for s, f in tta.views:
        x = F.interpolate(image[None], size=scaled_size(*size, s), mode="bilinear", align_corners=False)
        x = x.flip(-1) if f else x
        logits = EncoderDecoder.slide_inference(seg, x, [dict(img_shape=tuple(x.shape[-2:]))])
        p = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).softmax(1)[0]
        p = p.flip(-1) if f else p
        total = p if total is None else total + p
    return total / len(tta.views)


def _mmseg_importable() -> None:
    import sys

    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _mmseg_fixtures import stub_mmcv_ops  # mmcv-lite: mmseg.models imports mmcv.ops

    stub_mmcv_ops()


def geometry(tta: TTA, h: int, w: int) -> dict[str, int]:
    """Windows and pixels per frame, before (padded) and after (mmseg's cut)."""
    out = {"windows": 0, "pixels_after": 0, "pixels_before": 0}
    for s, _ in tta.views:
        vh, vw = scaled_size(h, w, s)
        grid = window_grid(vh, vw, tta.window)
        out["windows"] += len(grid)
        out["pixels_after"] += len(grid) * window_shape(vh, vw, tta.window)[0] * window_shape(vh, vw, tta.window)[1]
        ph, pw = max(vh, tta.window.crop[0]), max(vw, tta.window.crop[1])
        out["pixels_before"] += len(window_grid(ph, pw, tta.window)) * tta.window.crop[0] * tta.window.crop[1]
    return out


def measure(predict, frames: Tensor, tta: TTA, num_classes: int, warmup: bool = True) -> dict[str, float]:
    """Frames/s of the three methods on the same frames (one untimed warm-up frame each when ``warmup``),
    and their agreement."""
    n = frames.shape[0]
    group = frames_per_group(tta, *frames.shape[-2:])
    if warmup:
        before_tta_probs(predict, frames[0], tta)
        tta_probs(predict, frames[:1], tta)
        mmseg_tta_probs(predict, frames[0], tta, num_classes)
    seconds = {"before": 0.0, "after": 0.0, "mmseg": 0.0}
    cpu = dict(seconds)  # CPU seconds of this process: less disturbed than wall time on a shared machine
    before, after, ref = [], [], []

    def timed(name, fn):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        seconds[name] += time.perf_counter() - t
        cpu[name] += time.process_time() - c
        return out

    for k in range(0, n, group):  # the three in turn on each group of frames: they see the same machine load
        chunk = frames[k : k + group]
        before += timed("before", lambda: [before_tta_probs(predict, f, tta) for f in chunk])
        after.append(timed("after", lambda: tta_probs(predict, chunk, tta)))
        ref += timed("mmseg", lambda: [mmseg_tta_probs(predict, f, tta, num_classes) for f in chunk])
    after = torch.cat(after)
    t_before, t_after, t_mmseg = seconds["before"], seconds["after"], seconds["mmseg"]
    ref_t = torch.stack(ref)
    before_t = torch.stack(before)
    return {
        "group": group,
        "before": n / t_before,
        "after": n / t_after,
        "mmseg": n / t_mmseg,
        "cpu": {k: n / v for k, v in cpu.items()},
        "after_diff": (after - ref_t).abs().max().item(),
        "before_diff": (before_t - ref_t).abs().max().item(),
        "after_agree": (after.argmax(1) == ref_t.argmax(1)).float().mean().item(),
        "before_agree": (before_t.argmax(1) == ref_t.argmax(1)).float().mean().item(),
    }


def report(title: str, tta: TTA, h: int, w: int, res: dict[str, float], frames: int) -> None:
    g = geometry(tta, h, w)
    print(f"{title}: {h}x{w} frames, crop {tta.window.crop} stride {tta.window.stride}, "
          f"{len(tta.scales)} scales x flip, batch {tta.batch_size}, {frames} timed frames")
    print(f"  windows/frame {g['windows']}; window pixels/frame before {g['pixels_before'] / 1e6:.3f} M, "
          f"after {g['pixels_after'] / 1e6:.3f} M (x{g['pixels_before'] / g['pixels_after']:.2f})")
    print(f"  before (padded, views batched):          {res['before']:8.3f} frames/s   "
          f"max|dprobs| vs mmseg {res['before_diff']:.2e}, argmax agreement {res['before_agree']:.4f}")
    print(f"  after (mmseg windows, {res['group']:2d} frames/group): {res['after']:8.3f} frames/s   "
          f"max|dprobs| vs mmseg {res['after_diff']:.2e}, argmax agreement {res['after_agree']:.4f}")
    print(f"  mmseg slide_inference, view by view:     {res['mmseg']:8.3f} frames/s")
    print(f"  after / before {res['after'] / res['before']:.2f}x, after / mmseg {res['after'] / res['mmseg']:.2f}x")
    c = res["cpu"]
    print(f"  per CPU second: before {c['before']:.3f}, after {c['after']:.3f}, mmseg {c['mmseg']:.3f} frames; "
          f"after / before {c['after'] / c['before']:.2f}x, after / mmseg {c['after'] / c['mmseg']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--frames", type=int, default=8, help="timed frames at the toy window")
    ap.add_argument("--frames-768", type=int, default=2, help="timed frames at 480x854 with the 768 window")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: least disturbed on a shared CPU)")
    ap.add_argument("--glibc-defaults", action="store_true", help="skip stcl.allocator (as before it existed)")
    args = ap.parse_args()
    from stcl.allocator import keep_large_blocks

    tuned = False if args.glibc_defaults else keep_large_blocks()
    print(f"allocator: {'stcl.allocator settings (as stcl infer)' if tuned else 'glibc defaults'}")
    torch.set_num_threads(args.threads)
    _mmseg_importable()
    params = load_params(args.params)
    torch.manual_seed(0)
    classes = 124
    model = build_segmentor(params.model, classes, load_pretrained=False).eval()
    gen = torch.Generator().manual_seed(0)
    title = f"CPU ({args.threads} threads), {params.model.backbone} UperNet (channels {params.model.channels})"
    runs = [
        (tta_from_params(params.infer, scales=PAPER_SCALES, flip=True, amp="off"),
         (params.synth.height, params.synth.width), args.frames),
        (tta_from_params(params.infer, scales=PAPER_SCALES, flip=True, crop_size=(768, 768), stride=(512, 512),
                         batch_size=8, amp="off"), (480, 854), args.frames_768),
    ]
    with torch.inference_mode():
        for k, (tta, (h, w), n) in enumerate(runs):
            frames = torch.rand((n, 3, h, w), generator=gen) * 255
            report(title, tta, h, w, measure(model.predict, frames, tta, classes, warmup=k == 0), n)


if __name__ == "__main__":
    main()
