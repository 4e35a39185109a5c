"""Label maps made visible: palette colours, a blend over the frame, and a legend of the classes present.

Colours are the palette the label PNGs carry (`stcl.data.palette.label_palette`: the PASCAL VOC
bit-interleaved colour map, index 255 white), so an overlay shows a class in the colour a PNG viewer shows
for its prediction file. Class ``c`` of a train-id map (0..123 for VSPW) is drawn in ``palette[c]``.

An overlay frame is ``round((1 − α)·frame + α·colour[label])`` per pixel (α = 0.5 by default), with a legend
box in the top-left corner listing the classes present, largest area first. Everything here is numpy + PIL
on uint8 (H, W, 3) RGB arrays; no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stcl.data.palette import label_palette

__all__ = [
    "PALETTE",
    "colorize",
    "blend",
    "legend_entries",
    "legend_box",
    "draw_legend",
    "render_overlay",
    "side_by_side",
]

PALETTE = np.asarray(label_palette(), dtype=np.uint8).reshape(256, 3)  # (256, 3) RGB


def colorize(label: np.ndarray) -> np.ndarray:
    """uint8 (H, W) class ids → uint8 (H, W, 3) RGB palette colours (255 = void, white)."""
    if label.ndim != 2:
        raise ValueError(f"label must be (H, W), got shape {label.shape}")
    return PALETTE[label.astype(np.uint8, copy=False)]


def blend(frame: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``(1 − alpha)·frame + alpha·colorize(label)``, rounded: uint8 (H, W, 3) and (H, W) → uint8 (H, W, 3)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[:2] != label.shape:
        raise ValueError(f"frame (H, W, 3) and label (H, W) must match, got {frame.shape} and {label.shape}")
    mixed = (1.0 - alpha) * frame.astype(np.float32) + alpha * colorize(label).astype(np.float32)
    return np.rint(mixed).astype(np.uint8)


def legend_entries(label: np.ndarray, class_names: Sequence[str], limit: int = 8) -> list[tuple[int, str]]:
    """(class id, name) of the classes present in ``label``, largest area first, at most ``limit``.

    Void (255) and ids without a name are left out.
    """
    counts = np.bincount(label.ravel(), minlength=256)
    order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0 and c < len(class_names)]
    return [(c, class_names[c]) for c in order[:limit]]


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def legend_box(height: int, width: int, entries: Sequence[tuple[int, str]]) -> tuple[int, int, int, int]:
    """Layout of the legend on a (height, width) frame: (row height, font size, box width, box height).

    The font scales with the frame height (8..24 px); the box is at the top-left corner and holds one row per
    entry, at most as many rows as fit in the frame.
    """
    font_size = max(8, min(24, height // 30))
    row = font_size + 4
    rows = min(len(entries), max(1, (height - 4) // row))
    text_w = max((_font(font_size).getlength(name) for _, name in entries[:rows]), default=0)
    return row, font_size, min(width, int(row + 6 + text_w + 6)), min(height, row * rows + 4)


def draw_legend(image: np.ndarray, entries: Sequence[tuple[int, str]]) -> np.ndarray:
    """Draw a legend (colour swatch + name per entry) on a copy of uint8 (H, W, 3) ``image``, top-left corner."""
    if not entries:
        return image
    height, width = image.shape[:2]
    row, font_size, box_w, box_h = legend_box(height, width, entries)
    font = _font(font_size)
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, box_w - 1, box_h - 1), fill=(0, 0, 0))
    for i, (cls, name) in enumerate(entries[: (box_h - 4) // row]):
        y = 2 + i * row
        draw.rectangle((3, y + 1, 3 + row - 4, y + row - 3), fill=tuple(int(v) for v in PALETTE[cls]))
        draw.text((row + 4, y), name, fill=(255, 255, 255), font=font)
    return np.asarray(canvas).copy()


def render_overlay(
    frame: np.ndarray,
    label: np.ndarray,
    class_names: Sequence[str],
    *,
    alpha: float = 0.5,
    legend: bool = True,
    side_by_side_raw: bool = False,
) -> np.ndarray:
    """One overlay video frame: blend + legend, optionally ``[raw frame | overlay]`` side by side.

    Args:
        frame: uint8 (H, W, 3) RGB.
        label: uint8 (H, W) class ids.
        class_names: names by class id (legend text).
        alpha: weight of the class colour.
        legend: draw the legend of the classes present.
        side_by_side_raw: put the raw frame on the left.

    Returns:
        uint8 (H, W, 3), or (H, 2W, 3) side by side.
    """
    out = blend(frame, label, alpha)
    if legend:
        out = draw_legend(out, legend_entries(label, class_names))
    return side_by_side([frame, out]) if side_by_side_raw else out


def side_by_side(images: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate uint8 (H, W_i, 3) images left to right → (H, ΣW_i, 3)."""
    if len({im.shape[0] for im in images}) != 1:
        raise ValueError(f"images must share a height, got {[im.shape for im in images]}")
    return np.concatenate(list(images), axis=1)
