"""Reader of the ADE20K scene-parsing layout (ADEChallengeData2016, as mmseg expects it).

::

    ROOT/images/{training,validation}/ADE_{train,val}_<8-digit>.jpg
    ROOT/annotations/{training,validation}/<same stem>.png     values 0 = other, 1..150 = classes

Train ids follow mmseg's ``reduce_zero_label``: 0 → 255, v → v − 1 (150 classes, names in
`stcl.data.classes.ADE_CLASSES`). `stcl.data.classes.ade_to_vspw_lut` maps them into VSPW.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stcl.data.classes import ADE_CLASSES, IGNORE_INDEX
from stcl.data.io import DataError, load_label_png

__all__ = ["SPLIT_DIRS", "split_dir", "list_samples", "check_raw_annotation", "to_train_ids", "load_train_ids"]

SPLIT_DIRS = {"train": "training", "val": "validation"}
NUM_CLASSES = len(ADE_CLASSES)

_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_LUT[1 : NUM_CLASSES + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)
_VALID = np.zeros(256, dtype=bool)
_VALID[: NUM_CLASSES + 1] = True


def split_dir(split: str) -> str:
    if split not in SPLIT_DIRS:
        raise ValueError(f"ADE20K split must be one of {sorted(SPLIT_DIRS)}, got {split!r}")
    return SPLIT_DIRS[split]


def list_samples(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """Sorted (image, annotation) pairs of a split; FileNotFoundError naming a missing annotation."""
    root = Path(root)
    images = root / "images" / split_dir(split)
    annotations = root / "annotations" / split_dir(split)
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: directory not found")
    pairs = []
    for img in sorted(p for p in images.iterdir() if p.suffix == ".jpg" and not p.name.startswith(".")):
        ann = annotations / f"{img.stem}.png"
        if not ann.is_file():
            raise FileNotFoundError(f"{ann}: annotation of {img.name} not found")
        pairs.append((img, ann))
    if not pairs:
        raise DataError(f"{images}: split is empty (no .jpg images)")
    return pairs


def check_raw_annotation(raw: np.ndarray, path: str | Path) -> np.ndarray:
    """Return ``raw`` if every value is in 0..150; DataError naming ``path`` otherwise."""
    bad = ~_VALID[raw]
    if bad.any():
        raise DataError(f"{path}: annotation values {np.unique(raw[bad]).tolist()[:10]} outside 0..{NUM_CLASSES}")
    return raw


def to_train_ids(raw: np.ndarray) -> np.ndarray:
    """reduce_zero_label: 0 → 255, v → v − 1. uint8 (H, W) → uint8 (H, W)."""
    return _LUT[raw]


def load_train_ids(path: str | Path) -> np.ndarray:
    """Validated ADE annotation as train ids, uint8 (H, W) in {0..149, 255}."""
    return to_train_ids(check_raw_annotation(load_label_png(path), path))
