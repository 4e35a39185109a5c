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

from stcl.infer.sliding import Canvas, Predictor, Window, run_windows

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


def _view_canvas(image: Tensor, scale: float, flip: bool, tta: TTA) -> Canvas:
    """The (resized, flipped) frame of one view, cut into windows."""
    size = scaled_size(image.shape[1], image.shape[2], scale)
    view = image[None]
    if size != tuple(image.shape[1:]):
        view = F.interpolate(view, size=size, mode="bilinear", align_corners=False)
    if flip:
        view = view.flip(-1)
    return Canvas(view[0], tta.window, tta.pad_value)


def _view_probs(logits: Tensor, flip: bool, frame_size: tuple[int, int]) -> Tensor:
    """A view's averaged window logits (C, h, w) → probabilities (C, H, W) at the frame size, unflipped."""
    if tuple(logits.shape[1:]) != frame_size:
        logits = F.interpolate(logits[None], size=frame_size, mode="bilinear", align_corners=False)[0]
    probs = logits.softmax(dim=0)
    return probs.flip(-1) if flip else probs


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
    views = tta.views
    canvases = [_view_canvas(image, s, f, tta) for s, f in views]
    total: list[Tensor] = []

    def add(i: int, logits: Tensor) -> None:
        probs = _view_probs(logits, views[i][1], frame_size)
        if total:
            total[0].add_(probs)
        else:
            total.append(probs)

    if batch_views:
        run_windows(predict, canvases, tta.batch_size, add)
    else:
        for i, canvas in enumerate(canvases):
            run_windows(predict, [canvas], tta.batch_size, lambda _, logits, i=i: add(i, logits))
    return total[0] / len(views)
