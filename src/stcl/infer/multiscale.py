"""Multi-scale + horizontal-flip test-time augmentation over sliding windows (paper 3.4).

For one frame and each *view* (scale ``r``, flipped or not) the frame is resized to
``(int(H·r + 0.5), int(W·r + 0.5))`` (mmcv's rescale rounding; bilinear, align_corners=False), flipped,
and run through the sliding window (`stcl.infer.sliding`); the view's logits are resized back to the frame
size (bilinear), turned into softmax probabilities and flipped back. The result is the mean of the views'
probabilities (mmseg 0.x ``aug_test`` order: resize logits, softmax, average).

Throughput: the windows of *all* views of a frame are crop-sized (small views are padded), so they are
cut into batches of ``batch_size`` windows regardless of the view they come from; a view is finished (and
its accumulators freed) as soon as its last window has run, so at most a couple of views' logits are alive.
``batch_views=False`` keeps each view's windows in their own batches instead (one scale/flip at a time),
for comparison in benchmarks/inference_speed.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stcl.infer.sliding import Predictor, Window, pad_to_window, run_predictor, window_grid

__all__ = ["TTA", "scaled_size", "tta_probs"]


@dataclass(frozen=True)
class TTA:
    """Test-time augmentation: ``scales`` × (no flip, flip), each by sliding ``window``.

    ``batch_size`` is the number of windows per forward pass; ``pad_value`` the image value used to pad a
    view smaller than the window (0..255 units).
    """

    scales: tuple[float, ...]
    flip: bool
    window: Window
    batch_size: int = 8
    pad_value: float = 0.0

    def __post_init__(self) -> None:
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be a non-empty tuple of positive ratios, got {self.scales}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    @property
    def views(self) -> list[tuple[float, bool]]:
        """(scale, flipped) of every view, scales in order, unflipped first."""
        flips = (False, True) if self.flip else (False,)
        return [(s, f) for s in self.scales for f in flips]


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(H, W) of a frame resized by ``scale`` with mmcv's rounding (at least 1 pixel)."""
    return max(int(height * scale + 0.5), 1), max(int(width * scale + 0.5), 1)


@dataclass
class _View:
    flip: bool
    size: tuple[int, int]  # (h, w) before padding
    image: Tensor  # (3, ph, pw) padded
    corners: list[tuple[int, int]]
    logits: Tensor | None = None  # (C, ph, pw)
    count: Tensor | None = None  # (1, ph, pw)
    remaining: int = 0


def _make_view(image: Tensor, scale: float, flip: bool, tta: TTA) -> _View:
    h, w = image.shape[-2:]
    size = scaled_size(h, w, scale)
    view = image[None]
    if size != (h, w):
        view = F.interpolate(view, size=size, mode="bilinear", align_corners=False)
    if flip:
        view = view.flip(-1)
    view = pad_to_window(view[0], tta.window, tta.pad_value)
    corners = window_grid(*view.shape[-2:], tta.window)
    return _View(flip=flip, size=size, image=view, corners=corners, remaining=len(corners))


def _finish(view: _View, frame_size: tuple[int, int]) -> Tensor:
    """Averaged window logits of a view → probabilities (C, H, W) at the frame size, unflipped."""
    assert view.logits is not None and view.count is not None
    logits = (view.logits / view.count)[:, : view.size[0], : view.size[1]]
    if view.size != frame_size:
        logits = F.interpolate(logits[None], size=frame_size, mode="bilinear", align_corners=False)[0]
    probs = logits.softmax(dim=0)
    return probs.flip(-1) if view.flip else probs


@torch.inference_mode()
def tta_probs(predict: Predictor, image: Tensor, tta: TTA, batch_views: bool = True) -> Tensor:
    """Softmax probabilities of one frame averaged over the TTA views.

    Args:
        predict: ``(B, 3, h, w) float 0..255 → (B, C, h, w)`` logits.
        image: (3, H, W) float 0..255, on the predictor's device.
        tta: scales, flip, window, batch size.
        batch_views: batch windows across views (True) or one view at a time (False).

    Returns:
        (C, H, W) float32 probabilities (each pixel sums to 1).
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}")
    frame_size = (int(image.shape[1]), int(image.shape[2]))
    image = image.float()
    views = [_make_view(image, s, f, tta) for s, f in tta.views]
    jobs = [(v, y, x) for v in views for (y, x) in v.corners]
    if batch_views:
        chunks = [jobs[i : i + tta.batch_size] for i in range(0, len(jobs), tta.batch_size)]
    else:
        chunks = []
        for v in views:
            own = [(v, y, x) for (y, x) in v.corners]
            chunks += [own[i : i + tta.batch_size] for i in range(0, len(own), tta.batch_size)]
    ch, cw = tta.window.crop
    total: Tensor | None = None
    for chunk in chunks:
        out = run_predictor(predict, torch.stack([v.image[:, y : y + ch, x : x + cw] for v, y, x in chunk]))
        for k, (v, y, x) in enumerate(chunk):
            if v.logits is None:
                v.logits = out.new_zeros((out.shape[1], *v.image.shape[-2:]))
                v.count = out.new_zeros((1, *v.image.shape[-2:]))
            v.logits[:, y : y + ch, x : x + cw] += out[k]
            v.count[:, y : y + ch, x : x + cw] += 1
            v.remaining -= 1
            if v.remaining == 0:
                probs = _finish(v, frame_size)
                total = probs if total is None else total.add_(probs)
                v.logits = v.count = None
                v.image = v.image[:, :0]  # free the view's pixels too
    assert total is not None
    return total / len(views)
