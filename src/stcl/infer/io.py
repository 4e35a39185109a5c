"""Files written by inference: palette label PNGs (colours: `stcl.data.palette`); the atomic writers come
from `stcl.atomic`.

A *video folder* (``<out>/<video>/`` of predictions, ``data/<video>/`` of pseudo labels) is built under a
hidden temporary name beside its final place and renamed into place only when every file is written
(`stcl.atomic.atomic_dir`), so a killed job never leaves a half-written folder under the final name. A rerun
sees either the complete folder (and skips it) or nothing (and redoes it); stale temporary folders of
killed runs are removed by `stcl.atomic.remove_stale_tmp`.

This module imports no torch: `stcl submit` and the tests of the submission use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stcl.atomic import atomic_path
from stcl.data.palette import label_palette

__all__ = ["save_label_png"]

_PALETTE = label_palette()


def save_label_png(path: str | Path, label: np.ndarray) -> None:
    """Write a label map as a single-channel palette PNG (mode "P"; stored values = ``label``), atomically.

    Args:
        path: destination ``.png``.
        label: uint8 (H, W) class ids (0..123 for predictions, raw VSPW ids for pseudo-label masks).
    """
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"label must be uint8 (H, W), got {label.dtype} {tuple(label.shape)} for {path}")
    img = Image.fromarray(np.ascontiguousarray(label), mode="L").convert("P")
    # convert("P") from "L" keeps the values as indices with a grey palette: replace it by ours.
    img.putpalette(_PALETTE)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
