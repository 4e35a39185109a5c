"""Multi-scale + horizontal-flip test-time augmentation over sliding windows (paper 3.4), and its one builder.

For each *view* (scale ``r``, flipped or not) a frame is resized to ``(int(H·r + 0.5), int(W·r + 0.5))``
(mmcv's rescale rounding; bilinear, align_corners=False, on float 0..255 values), flipped, and run through
the sliding window (`stcl.infer.sliding`, mmseg's ``slide_inference``); the view's logits are resized back
to the frame size (bilinear), turned into softmax probabilities and flipped back. The result is the mean of
the views' probabilities, added in view order: mmseg 0.x ``EncoderDecoder.aug_test`` (resize logits,
softmax, flip back, sum, divide). mmcv resizes the uint8 frame with cv2 instead; the difference that makes
is measured in tests/test_infer_mmseg_equivalence.py.

Throughput: windows of one view all have one shape, and frames of a video share a size, so the windows of
one view of *several frames* fill a batch (`tta_probs` takes (N, 3, H, W)). `frames_per_group` is the
number of frames that lets the view with the fewest windows fill one batch of ``batch_size``; memory is then
the probabilities of those frames plus the window sums of one batch's canvases.

`tta_from_params` is the one place a TTA is built from params: `stcl infer`, `stcl pseudo_label`,
`stcl predict` and `stcl plan` all call it, so scales, flip, window, batch size and precision cannot differ
between them; `pseudo_label_tta` is the one place the pseudo labels' scales and flip are chosen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from stcl.infer.sliding import Canvas, Predictor, Window, run_windows, window_grid

if TYPE_CHECKING:
    from stcl.params import InferParams, Params

__all__ = ["AMP_MODES", "TTA", "tta_from_params", "pseudo_label_tta", "scaled_size", "frames_per_group", "tta_probs"]

AMP_MODES = ("off", "bf16", "fp16")


@dataclass(frozen=True)
class TTA:
    """Test-time augmentation: ``scales`` × (no flip, flip), each by sliding ``window``.

    ``batch_size`` is the number of windows per forward pass; ``amp`` the autocast of the forward pass
    ("off", "bf16", "fp16"; applied on CUDA, see `stcl.infer.ensemble.inference_amp`).
    """

    scales: tuple[float, ...]
    flip: bool
    window: Window
    batch_size: int = 8
    amp: str = "off"

    def __post_init__(self) -> None:
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be a non-empty tuple of positive ratios, got {self.scales}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")

    @property
    def views(self) -> list[tuple[float, bool]]:
        """(scale, flipped) of every view, scales in order, unflipped first."""
        flips = (False, True) if self.flip else (False,)
        return [(s, f) for s in self.scales for f in flips]


def tta_from_params(infer: InferParams, **overrides: Any) -> TTA:
    """The TTA of ``params.infer``; ``overrides`` (scales, flip, crop_size, stride, batch_size, amp) replace
    single settings where not None (pseudo labels pass their scales and flip, `stcl predict` its options)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - {"scales", "flip", "crop_size", "stride", "batch_size", "amp"}
    if unknown:
        raise TypeError(f"tta_from_params: unknown settings {sorted(unknown)}")
    s = {
        "scales": infer.scales,
        "flip": infer.flip,
        "crop_size": infer.crop_size,
        "stride": infer.stride,
        "batch_size": infer.batch_size,
        "amp": infer.amp,
        **given,
    }
    return TTA(
        scales=tuple(float(x) for x in s["scales"]),
        flip=bool(s["flip"]),
        window=Window(tuple(s["crop_size"]), tuple(s["stride"])),
        batch_size=int(s["batch_size"]),
        amp=s["amp"],
    )


def pseudo_label_tta(params: Params) -> TTA:
    """The teacher's TTA of the pseudo labels, chosen here only (`stcl pseudo_label`, `stcl plan`):
    ``params.pseudo_label`` scales and flip, window, stride, batch size and amp of ``params.infer``."""
    return tta_from_params(params.infer, scales=params.pseudo_label.scales, flip=params.pseudo_label.flip)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(H, W) of a frame resized by ``scale`` with mmcv's rounding (at least 1 pixel)."""
    return max(int(height * scale + 0.5), 1), max(int(width * scale + 0.5), 1)


def frames_per_group(tta: TTA, height: int, width: int) -> int:
    """Frames of one size to run together: enough that the view with the fewest windows fills a batch."""
    fewest = min(len(window_grid(*scaled_size(height, width, s), tta.window)) for s in tta.scales)
    return max(1, math.ceil(tta.batch_size / fewest))


def _view(images: Tensor, scale: float, flip: bool) -> Tensor:
    """(N, 3, H, W) frames resized by ``scale`` (and flipped): (N, 3, h, w)."""
    size = scaled_size(images.shape[-2], images.shape[-1], scale)
    if size != tuple(images.shape[-2:]):
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return images.flip(-1) if flip else images


def _view_probs(logits: Tensor, flip: bool, frame_size: tuple[int, int]) -> Tensor:
    """A view's averaged window logits (C, h, w) → probabilities (C, H, W) at the frame size, unflipped."""
    if tuple(logits.shape[1:]) != frame_size:
        logits = F.interpolate(logits[None], size=frame_size, mode="bilinear", align_corners=False)[0]
    probs = logits.softmax(dim=0)
    return probs.flip(-1) if flip else probs


@torch.inference_mode()
def tta_probs(predict: Predictor, images: Tensor, tta: TTA) -> Tensor:
    """Softmax probabilities of equal-sized frames, each averaged over the TTA views.

    Views run one after the other; within a view, the windows of all N frames share batches.

    Args:
        predict: ``(B, 3, h, w) float 0..255 → (B, C, h, w)`` logits.
        images: (N, 3, H, W) float 0..255 on the predictor's device (N = `frames_per_group` keeps every
            batch full with the least memory).
        tta: scales, flip, window, batch size.

    Returns:
        (N, C, H, W) float32 probabilities (each pixel sums to 1).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    frame_size = (int(images.shape[2]), int(images.shape[3]))
    images = images.float()
    total: list[Tensor] = []  # (N, C, H, W), allocated when the number of classes is known

    for scale, flip in tta.views:
        view = _view(images, scale, flip)

        def add(i: int, logits: Tensor, flip: bool = flip) -> None:
            probs = _view_probs(logits, flip, frame_size)
            if not total:
                total.append(probs.new_zeros((images.shape[0], *probs.shape)))
            total[0][i] += probs

        run_windows(predict, [Canvas(v, tta.window) for v in view], tta.batch_size, add)
        del view
    return total[0].div_(len(tta.views))
