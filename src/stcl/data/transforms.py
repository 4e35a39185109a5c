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

__all__ = [
    "ClipDraw",
    "PhotometricDraw",
    "ClipTransform",
    "rescale_size",
    "adjust_saturation_hue",
    "rgb_to_hsv",
    "hsv_to_rgb",
]

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
            img = adjust_saturation_hue(img, self.saturation, self.hue)
        if self.contrast is not None and not self.contrast_first:
            img = _convert(img, self.contrast, 0.0)
        return img


def _convert(img: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def adjust_saturation_hue(img: np.ndarray, saturation: float | None, hue: int | None) -> np.ndarray:
    """Scale HSV saturation by ``saturation`` (clipped to 1) and rotate hue by ``hue``/180 turns.

    uint8 (H, W, 3) RGB → uint8 (H, W, 3). Saturation alone needs no HSV round trip: with V = max(R, G, B)
    fixed, every channel moves along V − c ∝ S, so c' = V − (S'/S)(V − c).
    """
    x = img.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = np.maximum(np.maximum(r, g), b)[..., None]  # (channel-axis reductions are slow in numpy)
    if hue is None:
        spread = v - np.minimum(np.minimum(r, g), b)[..., None]  # V·S
        ratio = np.float32(saturation)
        if saturation > 1:  # S' = min(S·alpha, 1)  ⇔  ratio = min(alpha, V / (V − min))
            ratio = np.minimum(ratio, v / np.maximum(spread, np.float32(1e-6)))
        out = v - ratio * (v - x)
    else:
        h6, s, v2 = _rgb_to_hsv6(x)
        if saturation is not None:
            s = np.minimum(s * np.float32(saturation), np.float32(1))
        h6 = h6 + np.float32(hue * 6 / 180)
        h6 -= np.float32(6) * np.floor(h6 * np.float32(1 / 6))
        out = _hsv6_to_rgb(h6, s, v2)
    return np.clip(out + np.float32(0.5), 0, 255).astype(np.uint8)


def _rgb_to_hsv6(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float (..., 3) RGB → hue in [0, 6) (sextants), saturation in [0, 1], value (same scale as x)."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    maxc = np.maximum(np.maximum(r, g), b)
    delta = maxc - np.minimum(np.minimum(r, g), b)
    inv = np.float32(1) / np.where(delta > 0, delta, np.float32(1))
    h6 = np.where(maxc == r, (g - b) * inv, np.where(maxc == g, (b - r) * inv + 2, (r - g) * inv + 4))
    h6[h6 < 0] += 6
    h6[delta == 0] = 0
    s = delta / np.where(maxc > 0, maxc, np.float32(1))
    return h6.astype(np.float32), s.astype(np.float32), maxc


def _hsv6_to_rgb(h6: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inverse of `_rgb_to_hsv6`: channel c = V − V·S·clip(min(k, 4 − k), 0, 1), k = (h6 + n_c) mod 6."""
    vs = v * s
    out = np.empty(h6.shape + (3,), dtype=np.float32)
    for c, n in enumerate((5, 3, 1)):
        k = h6 + np.float32(n)
        k[k >= 6] -= 6
        out[..., c] = v - vs * np.clip(np.minimum(k, 4 - k), 0, 1)
    return out


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """float (..., 3) RGB in [0, 1] → HSV in [0, 1] (hue in turns)."""
    h6, s, v = _rgb_to_hsv6(np.asarray(rgb, dtype=np.float32))
    return np.stack([h6 / 6, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """float (..., 3) HSV in [0, 1] → RGB in [0, 1]."""
    hsv = np.asarray(hsv, dtype=np.float32)
    return _hsv6_to_rgb((hsv[..., 0] % 1) * 6, hsv[..., 1], hsv[..., 2])


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
                counts = np.bincount(_resized_crop_label(query_label, resized, crop).ravel(), minlength=256)
                counts[IGNORE_INDEX] = 0
                counts = counts[counts > 0]  # pixels per present class, ignore excluded (as mmseg)
                if len(counts) > 1 and counts.max() / counts.sum() < a.cat_max_ratio:
                    break
                crop = random_crop()
        flip = bool(rng.random() < a.flip_prob)
        photometric = PhotometricDraw.sample(rng) if a.photometric else None
        return ClipDraw(resized, crop, flip, photometric)

    def apply(
        self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], draw: ClipDraw
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Apply ``draw`` to every frame. Returns uint8 (h, w, 3) images and uint8 (h, w) labels, h, w = crop_size."""
        crop_h, crop_w = self.augment.crop_size
        out_images, out_labels = [], []
        for img, label in zip(images, labels):
            img = _resized_crop_image(img, draw.resized_hw, draw.crop)
            label = _resized_crop_label(label, draw.resized_hw, draw.crop)
            if draw.flip:
                img, label = img[:, ::-1], label[:, ::-1]
            if draw.photometric is not None:
                img = draw.photometric.apply(np.ascontiguousarray(img))
            padded_img = np.zeros((crop_h, crop_w, 3), dtype=np.uint8)
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
            (images, labels): T uint8 (h, w, 3) RGB (not normalised) and T uint8 (h, w), with
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
