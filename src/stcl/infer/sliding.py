"""Sliding-window inference computed as mmseg's ``EncoderDecoder.slide_inference`` computes it.

The window grid: for an image of height ``H``, crop ``c`` and stride ``s`` there are
``max(H - c + s - 1, 0) // s + 1`` rows of windows; row ``i`` ends at ``min(i·s + c, H)`` and starts
``c`` before that end, or at 0. An image smaller than the crop in a direction is therefore cut into one
window of the image's own extent there: windows are ``(min(c_h, H), min(c_w, W))``, never padded. The
logits of overlapping windows are summed and divided by a count map (how many windows cover each pixel).
This is mmseg 1.2.2's ``slide_inference`` (mmseg/models/segmentors/encoder_decoder.py) line for line;
tests/test_infer_mmseg_equivalence.py runs that function on the same model and compares.

All windows of one image have one shape, and so do the windows of equal-sized images (the frames of a
video at one scale and flip): `run_windows` stacks windows of consecutive canvases into batches of
``batch_size`` windows of the same shape, which is how the TTA (`stcl.infer.multiscale`) batches across
frames without padding anything.

A *predictor* is any callable ``(B, 3, h, w) float 0..255 → (B, C, h, w)`` logits, e.g.
``Segmentor.predict``; tests use tiny fully convolutional models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Predictor", "Window", "window_shape", "window_grid", "run_predictor", "Canvas", "run_windows", "slide_logits"]

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


def window_shape(height: int, width: int, window: Window) -> tuple[int, int]:
    """(h, w) of every window of a (height, width) image: ``min(crop, size)`` per axis."""
    return min(window.crop[0], height), min(window.crop[1], width)


def window_grid(height: int, width: int, window: Window) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the windows covering a (height, width) image, row-major (mmseg's grid).

    Every window has the shape `window_shape`; together they cover every pixel.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    ys = _starts(height, window.crop[0], window.stride[0])
    xs = _starts(width, window.crop[1], window.stride[1])
    return [(y, x) for y in ys for x in xs]


def run_predictor(predict: Predictor, batch: Tensor) -> Tensor:
    """Call ``predict`` on ``batch`` (B, 3, h, w) and check it returns logits (B, C, h, w); float32 out."""
    out = predict(batch)
    if out.ndim != 4 or out.shape[0] != batch.shape[0] or out.shape[-2:] != batch.shape[-2:]:
        raise ValueError(
            f"predictor must map (B, 3, h, w) to (B, C, h, w); got {tuple(batch.shape)} -> {tuple(out.shape)}"
        )
    return out.float()


class Canvas:
    """One image cut into sliding windows, with the running sum of the windows' logits and the count map.

    Args:
        image: (3, H, W) float 0..255.
        window: crop and stride.

    The sums are allocated when the first window's logits arrive and freed by `result`.
    """

    def __init__(self, image: Tensor, window: Window) -> None:
        if image.ndim != 3:
            raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}")
        self.image = image
        self.size = (int(image.shape[1]), int(image.shape[2]))
        self.shape = window_shape(*self.size, window)
        self.corners = window_grid(*self.size, window)
        self._logits: Tensor | None = None  # (C, H, W)
        self._count: Tensor | None = None  # (1, H, W)
        self._pending = len(self.corners)

    def crop(self, corner: tuple[int, int]) -> Tensor:
        """The (3, h, w) window at ``corner`` (h, w = `shape`)."""
        (y, x), (h, w) = corner, self.shape
        return self.image[:, y : y + h, x : x + w]

    def add(self, corner: tuple[int, int], logits: Tensor) -> bool:
        """Add one window's (C, h, w) logits; True once every window has been added."""
        (y, x), (h, w) = corner, self.shape
        if self._logits is None:
            self._logits = logits.new_zeros((logits.shape[0], *self.size))
            self._count = logits.new_zeros((1, *self.size))
        self._logits[:, y : y + h, x : x + w] += logits
        self._count[:, y : y + h, x : x + w] += 1
        self._pending -= 1
        return self._pending == 0

    def result(self) -> Tensor:
        """(C, H, W) logits averaged over the covering windows; frees the buffers and the image."""
        if self._pending or self._logits is None or self._count is None:
            raise RuntimeError(f"{self._pending} of {len(self.corners)} windows not added yet")
        out = self._logits.div_(self._count)
        self._logits = self._count = None
        self.image = self.image[:, :0]
        return out


def run_windows(
    predict: Predictor, canvases: Sequence[Canvas], batch_size: int, on_done: Callable[[int, Tensor], None]
) -> None:
    """Run every window of ``canvases`` through ``predict``, up to ``batch_size`` windows of one shape per
    call, windows of consecutive canvases sharing batches (a batch ends early where the window shape
    changes). ``on_done(i, logits (C, H, W))`` is called as soon as canvas ``i`` is complete, so at most the
    canvases of one batch hold sums at a time."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    chunk: list[tuple[int, tuple[int, int]]] = []

    def flush() -> None:
        out = run_predictor(predict, torch.stack([canvases[i].crop(corner) for i, corner in chunk]))
        for k, (i, corner) in enumerate(chunk):
            if canvases[i].add(corner, out[k]):
                on_done(i, canvases[i].result())
        chunk.clear()

    for i, canvas in enumerate(canvases):
        for corner in canvas.corners:
            if chunk and (len(chunk) == batch_size or canvases[chunk[0][0]].shape != canvas.shape):
                flush()
            chunk.append((i, corner))
    if chunk:
        flush()


@torch.inference_mode()
def slide_logits(predict: Predictor, images: Tensor, window: Window, batch_size: int = 8) -> Tensor:
    """Sliding-window logits of one scale, as mmseg's ``slide_inference``.

    Args:
        predict: ``(B, 3, h, w) → (B, C, h, w)`` logits.
        images: (N, 3, H, W) float 0..255.
        window: crop and stride.
        batch_size: windows per forward pass (windows of all N images are batched together).

    Returns:
        (N, C, H, W) logits averaged over the windows covering each pixel.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    results: dict[int, Tensor] = {}
    run_windows(predict, [Canvas(im, window) for im in images], batch_size, results.__setitem__)
    return torch.stack([results[i] for i in range(len(images))])
