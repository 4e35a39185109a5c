"""Sliding-window inference with mmseg's ``mode='slide'`` semantics.

The window grid is mmseg's (``EncoderDecoder.slide_inference``): for an image of height ``H``, crop ``c``
and stride ``s`` there are ``max(H - c + s - 1, 0) // s + 1`` rows of windows starting at ``i·s``, the last
one shifted back so it ends at the border; logits of overlapping windows are averaged with a count map.
One difference, as the project asks: an image smaller than the window is padded (bottom/right, with
``pad_value`` in 0..255 image units, like the training pipeline's crop padding) up to the window, and the
logits of the padding are dropped. Every window therefore has exactly the crop size, which lets windows
of different scales share one batch (see `stcl.infer.multiscale`).

A *predictor* is any callable ``(B, 3, h, w) float 0..255 → (B, C, h, w) logits``, e.g.
``Segmentor.predict``; tests use tiny fully convolutional models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Predictor",
    "Window",
    "window_grid",
    "pad_to_window",
    "run_predictor",
    "Canvas",
    "run_windows",
    "slide_logits",
]

Predictor = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Window:
    """Sliding-window geometry: ``crop`` and ``stride`` as (H, W) in pixels."""

    crop: tuple[int, int]
    stride: tuple[int, int]

    def __post_init__(self) -> None:
        if len(self.crop) != 2 or min(self.crop) <= 0:
            raise ValueError(f"crop must be two positive ints (H, W), got {self.crop}")
        if len(self.stride) != 2 or min(self.stride) <= 0:
            raise ValueError(f"stride must be two positive ints (H, W), got {self.stride}")
        if self.stride[0] > self.crop[0] or self.stride[1] > self.crop[1]:
            raise ValueError(f"stride {self.stride} must not exceed crop {self.crop} (pixels would be skipped)")


def _starts(size: int, crop: int, stride: int) -> list[int]:
    grids = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(grids)]


def window_grid(height: int, width: int, window: Window) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the windows covering an image of at least the crop size.

    Windows are ``window.crop`` sized, row-major, and together cover every pixel (mmseg's grid).
    """
    if height < window.crop[0] or width < window.crop[1]:
        raise ValueError(f"image {height}x{width} is smaller than the window {window.crop}: pad it first")
    ys = _starts(height, window.crop[0], window.stride[0])
    xs = _starts(width, window.crop[1], window.stride[1])
    return [(y, x) for y in ys for x in xs]


def pad_to_window(image: Tensor, window: Window, pad_value: float = 0.0) -> Tensor:
    """Pad ``image`` (..., H, W) at the bottom/right to at least the window size (unchanged if large enough)."""
    h, w = image.shape[-2:]
    ph, pw = max(window.crop[0] - h, 0), max(window.crop[1] - w, 0)
    if ph == 0 and pw == 0:
        return image
    return F.pad(image, (0, pw, 0, ph), value=pad_value)


def run_predictor(predict: Predictor, batch: Tensor) -> Tensor:
    """Call ``predict`` on ``batch`` (B, 3, h, w) and check it returns logits (B, C, h, w)."""
    out = predict(batch)
    if out.ndim != 4 or out.shape[0] != batch.shape[0] or out.shape[-2:] != batch.shape[-2:]:
        raise ValueError(
            f"predictor must map (B, 3, h, w) to (B, C, h, w); got {tuple(batch.shape)} -> {tuple(out.shape)}"
        )
    return out.float()


class Canvas:
    """One image cut into sliding windows, with the running sum of the windows' logits.

    Args:
        image: (3, h, w) float 0..255; padded at the bottom/right to the window if smaller.
        window: crop and stride.
        pad_value: image value of that padding.
    """

    def __init__(self, image: Tensor, window: Window, pad_value: float = 0.0) -> None:
        if image.ndim != 3:
            raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}")
        self.size = (int(image.shape[1]), int(image.shape[2]))
        self.window = window
        self.image = pad_to_window(image, window, pad_value)
        self.corners = window_grid(*self.image.shape[-2:], window)
        self._logits: Tensor | None = None  # (C, ph, pw)
        self._count: Tensor | None = None  # (1, ph, pw)
        self._pending = len(self.corners)

    def crop(self, corner: tuple[int, int]) -> Tensor:
        """The (3, ch, cw) window at ``corner``."""
        (y, x), (ch, cw) = corner, self.window.crop
        return self.image[:, y : y + ch, x : x + cw]

    def add(self, corner: tuple[int, int], logits: Tensor) -> bool:
        """Add one window's (C, ch, cw) logits; True once every window has been added."""
        (y, x), (ch, cw) = corner, self.window.crop
        if self._logits is None:
            self._logits = logits.new_zeros((logits.shape[0], *self.image.shape[-2:]))
            self._count = logits.new_zeros((1, *self.image.shape[-2:]))
        self._logits[:, y : y + ch, x : x + cw] += logits
        self._count[:, y : y + ch, x : x + cw] += 1
        self._pending -= 1
        return self._pending == 0

    def result(self) -> Tensor:
        """(C, h, w) logits averaged over the covering windows, padding dropped; frees the buffers."""
        if self._pending or self._logits is None or self._count is None:
            raise RuntimeError(f"{self._pending} of {len(self.corners)} windows not added yet")
        out = (self._logits / self._count)[:, : self.size[0], : self.size[1]]
        self._logits = self._count = None
        self.image = self.image[:, :0]
        return out


def run_windows(
    predict: Predictor, canvases: Sequence[Canvas], batch_size: int, on_done: Callable[[int, Tensor], None]
) -> None:
    """Run every window of ``canvases`` through ``predict``, ``batch_size`` windows per call, windows of
    consecutive canvases sharing batches. ``on_done(i, logits (C, h, w))`` is called as soon as canvas ``i``
    is complete, so its buffers can be freed before the next canvases fill theirs."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    jobs = [(i, corner) for i, c in enumerate(canvases) for corner in c.corners]
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        out = run_predictor(predict, torch.stack([canvases[i].crop(corner) for i, corner in chunk]))
        for k, (i, corner) in enumerate(chunk):
            if canvases[i].add(corner, out[k]):
                on_done(i, canvases[i].result())


@torch.inference_mode()
def slide_logits(
    predict: Predictor, image: Tensor, window: Window, batch_size: int = 8, pad_value: float = 0.0
) -> Tensor:
    """Sliding-window logits of one scale.

    Args:
        predict: ``(B, 3, h, w) → (B, C, h, w)`` logits.
        image: (N, 3, H, W) float 0..255.
        window: crop and stride.
        batch_size: windows per forward pass (windows of all N images are batched together).
        pad_value: image value of the padding when the image is smaller than the window.

    Returns:
        (N, C, H, W) logits averaged over the windows covering each pixel.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (N, 3, H, W), got {tuple(image.shape)}")
    results: dict[int, Tensor] = {}
    run_windows(predict, [Canvas(im, window, pad_value) for im in image], batch_size, results.__setitem__)
    return torch.stack([results[i] for i in range(len(image))])
