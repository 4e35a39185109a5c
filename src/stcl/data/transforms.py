"""Clip augmentation: mmseg's training pipeline with ONE random draw applied to every frame of a clip.

Order (mmseg ``train_pipeline``): RandomResize(scale, ratio_range, keep_ratio=True) → RandomCrop(crop_size,
cat_max_ratio) → RandomFlip(prob) → PhotoMetricDistortion → Pad(crop_size, 0 / 255).

Images are resized bilinear, labels nearest, both with pixel-centre alignment, so image and label stay
aligned. The resize is evaluated only inside the crop window (PIL ``resize(box=...)`` on the image, an index
map on the label): the output equals resize-then-crop at a fraction of the cost at ratio 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from stcl.data.classes import IGNORE_INDEX
from stcl.params import AugmentParams

__all__ = ["ClipDraw", "PhotometricDraw", "ClipTransform", "rescale_size", "rgb_to_hsv", "hsv_to_rgb"]

CAT_MAX_RATIO_TRIES = 10  # mmseg RandomCrop: re-draws before giving up


def rescale_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale_size`` with keep_ratio: fit (h, w) into ``scale`` = (long, short) edges in either order.

    Returns the new (h, w).
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return max(int(h * factor + 0.5), 1), max(int(w * factor + 0.5), 1)


@dataclass(frozen=True)
class PhotometricDraw:
    """mmseg PhotoMetricDistortion parameters (None = step skipped)."""

    brightness: float | None  # delta in [-32, 32]
    contrast: float | None  # alpha in [0.5, 1.5]
    contrast_first: bool
    saturation: float | None  # alpha in [0.5, 1.5]
    hue: int | None  # delta in [-18, 18) on OpenCV's 0..180 hue scale

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "PhotometricDraw":
        brightness = float(rng.uniform(-32, 32)) if rng.integers(2) else None
        contrast_first = bool(rng.integers(2))
        contrast = float(rng.uniform(0.5, 1.5)) if rng.integers(2) else None
        saturation = float(rng.uniform(0.5, 1.5)) if rng.integers(2) else None
        hue = int(rng.integers(-18, 18)) if rng.integers(2) else None
        return cls(brightness, contrast, contrast_first, saturation, hue)

    def apply(self, img: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB → uint8 (H, W, 3)."""
        if self.brightness is not None:
            img = _convert(img, 1.0, self.brightness)
        if self.contrast is not None and self.contrast_first:
            img = _convert(img, self.contrast, 0.0)
        if self.saturation is not None or self.hue is not None:
            hsv = rgb_to_hsv(img.astype(np.float32) / 255.0)
            if self.saturation is not None:
                hsv[..., 1] = np.clip(hsv[..., 1] * self.saturation, 0.0, 1.0)
            if self.hue is not None:
                hsv[..., 0] = (hsv[..., 0] + self.hue / 180.0) % 1.0
            img = np.clip(hsv_to_rgb(hsv) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if self.contrast is not None and not self.contrast_first:
            img = _convert(img, self.contrast, 0.0)
        return img


def _convert(img: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """float (..., 3) RGB in [0, 1] → HSV in [0, 1] (hue in turns)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = rgb.max(-1)
    minc = rgb.min(-1)
    delta = maxc - minc
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(maxc == r, (g - b) / safe, np.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    s = np.where(maxc > 0, delta / np.where(maxc > 0, maxc, 1.0), 0.0)
    return np.stack([h, s, maxc], axis=-1).astype(np.float32)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """float (..., 3) HSV in [0, 1] → RGB in [0, 1]."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(np.int64) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class ClipDraw:
    """Everything random about one clip: the same draw is applied to every frame."""

    resized_hw: tuple[int, int]  # frame size after RandomResize
    crop: tuple[int, int, int, int]  # (y0, x0, y1, x1) in resized coordinates
    flip: bool
    photometric: PhotometricDraw | None


def _nearest_index(start: int, stop: int, src: int, dst: int) -> np.ndarray:
    """Source indices of output pixels start..stop-1 of a nearest resize src → dst (pixel centres)."""
    idx = np.floor((np.arange(start, stop) + 0.5) * (src / dst)).astype(np.int64)
    return np.minimum(idx, src - 1)


def _resized_crop_label(label: np.ndarray, resized_hw: tuple[int, int], crop: tuple[int, int, int, int]) -> np.ndarray:
    h, w = label.shape
    y0, x0, y1, x1 = crop
    rows = _nearest_index(y0, y1, h, resized_hw[0])
    cols = _nearest_index(x0, x1, w, resized_hw[1])
    return label[rows[:, None], cols[None, :]]


def _resized_crop_image(img: np.ndarray, resized_hw: tuple[int, int], crop: tuple[int, int, int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    y0, x0, y1, x1 = crop
    if resized_hw == (h, w):
        return img[y0:y1, x0:x1]
    sy, sx = h / resized_hw[0], w / resized_hw[1]
    box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
    out = Image.fromarray(img).resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out)


class ClipTransform:
    """One random augmentation draw applied identically to every frame of a clip.

    Args:
        augment: scale (W, H) before the ratio draw, ratio_range, crop_size (H, W), cat_max_ratio,
            flip_prob, photometric.
    """

    def __init__(self, augment: AugmentParams) -> None:
        self.augment = augment

    def draw(self, size_hw: tuple[int, int], query_label: np.ndarray, rng: np.random.Generator) -> ClipDraw:
        """Sample the clip's augmentation for frames of ``size_hw``; the crop check uses ``query_label`` (H, W)."""
        a = self.augment
        ratio = float(rng.uniform(a.ratio_range[0], a.ratio_range[1]))
        target = (int(a.scale[0] * ratio), int(a.scale[1] * ratio))
        resized = rescale_size(size_hw[0], size_hw[1], target)
        crop_h, crop_w = a.crop_size

        def random_crop() -> tuple[int, int, int, int]:
            oy = int(rng.integers(0, max(resized[0] - crop_h, 0) + 1))
            ox = int(rng.integers(0, max(resized[1] - crop_w, 0) + 1))
            return oy, ox, oy + min(crop_h, resized[0]), ox + min(crop_w, resized[1])

        crop = random_crop()
        if a.cat_max_ratio < 1.0:
            for _ in range(CAT_MAX_RATIO_TRIES):
                labels, counts = np.unique(_resized_crop_label(query_label, resized, crop), return_counts=True)
                counts = counts[labels != IGNORE_INDEX]
                if len(counts) > 1 and counts.max() / counts.sum() < a.cat_max_ratio:
                    break
                crop = random_crop()
        flip = bool(rng.random() < a.flip_prob)
        photometric = PhotometricDraw.sample(rng) if a.photometric else None
        return ClipDraw(resized, crop, flip, photometric)

    def apply(
        self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], draw: ClipDraw
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Apply ``draw`` to every frame. Returns float32 (h, w, 3) images and uint8 (h, w) labels, h, w = crop_size."""
        crop_h, crop_w = self.augment.crop_size
        out_images, out_labels = [], []
        for img, label in zip(images, labels):
            img = _resized_crop_image(img, draw.resized_hw, draw.crop)
            label = _resized_crop_label(label, draw.resized_hw, draw.crop)
            if draw.flip:
                img, label = img[:, ::-1], label[:, ::-1]
            if draw.photometric is not None:
                img = draw.photometric.apply(np.ascontiguousarray(img))
            padded_img = np.zeros((crop_h, crop_w, 3), dtype=np.float32)
            padded_img[: img.shape[0], : img.shape[1]] = img
            padded_label = np.full((crop_h, crop_w), IGNORE_INDEX, dtype=np.uint8)
            padded_label[: label.shape[0], : label.shape[1]] = label
            out_images.append(padded_img)
            out_labels.append(padded_label)
        return out_images, out_labels

    def __call__(
        self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Augment a clip with one draw from ``rng``.

        Args:
            images: T frames, uint8 (H, W, 3) RGB, all the same size; index 0 is the query.
            labels: T label maps, uint8 (H, W) train ids (255 = ignore).
            rng: the clip's generator.

        Returns:
            (images, labels): T float32 (h, w, 3) in 0..255 (not normalised) and T uint8 (h, w), with
            (h, w) = augment.crop_size; padding is 0 for images and 255 for labels.
        """
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError(f"images and labels must be non-empty and of equal length, got {len(images)} and {len(labels)}")
        size = images[0].shape[:2]
        for i, (img, label) in enumerate(zip(images, labels)):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"images[{i}] must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
            if img.shape[:2] != size or label.shape != size:
                raise ValueError(f"frame {i}: image {img.shape[:2]} / label {label.shape} differ from frame 0 size {size}")
        return self.apply(images, labels, self.draw(size, labels[0], rng))
