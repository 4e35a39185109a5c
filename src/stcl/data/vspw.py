"""Reader of the VSPW on-disk layout (VSPW_480p is the same layout at 480 px height).

::

    ROOT/{train,val,test}.txt              one video name per line (a missing final newline is fine)
    ROOT/label_num_dic_final.json          {"others": "0", "wall": "1", ..., "train": "124"}
    ROOT/data/<video>/origin/<8-digit>.jpg frames
    ROOT/data/<video>/mask/<8-digit>.png   raw masks: 0 = others, 1..124 = classes, 255 = void

Models predict *train ids*: raw 0 and 255 → 255 (ignored), raw c → c − 1 (`to_train_ids`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stcl.data.classes import IGNORE_INDEX, VSPW_NUM_CLASSES
from stcl.data.io import DataError, load_image, load_label_png

__all__ = [
    "SPLITS",
    "FRAME_EXT",
    "MASK_EXT",
    "validate_video_name",
    "read_split",
    "video_dir",
    "list_stems",
    "list_frames",
    "list_masks",
    "frame_path",
    "mask_path",
    "load_image",
    "load_raw_mask",
    "check_raw_mask",
    "to_train_ids",
    "load_train_ids",
]

SPLITS = ("train", "val", "test")
FRAME_EXT = ".jpg"
MASK_EXT = ".png"

_VALID_RAW = np.zeros(256, dtype=bool)
_VALID_RAW[: VSPW_NUM_CLASSES + 1] = True
_VALID_RAW[IGNORE_INDEX] = True

_TRAIN_ID_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_TRAIN_ID_LUT[1 : VSPW_NUM_CLASSES + 1] = np.arange(VSPW_NUM_CLASSES, dtype=np.uint8)


def validate_video_name(name: str, source: str | Path) -> str:
    """Return ``name`` if it is a plain, visible directory name; DataError naming ``source`` otherwise.

    Hidden names (a leading '.') are refused as well: listings skip hidden files, as the official scripts do.
    """
    if not name or "/" in name or "\\" in name or ".." in name or name.startswith(".") or "\0" in name:
        raise DataError(f"{source}: invalid video name {name!r} (empty, hidden, path separator or '..')")
    return name


def read_split(root: str | Path, split: str) -> list[str]:
    """Video names listed in ``ROOT/<split>.txt``, in file order (blank lines skipped).

    Raises FileNotFoundError if the file is missing, DataError naming it if it is empty, lists a name
    twice, or a name contains a path separator or '..'.
    """
    path = Path(root) / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    names: list[str] = []
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        if not name:
            continue
        validate_video_name(name, path)
        if name in seen:
            raise DataError(f"{path}: video {name!r} listed twice")
        seen.add(name)
        names.append(name)
    if not names:
        raise DataError(f"{path}: split is empty")
    return names


def video_dir(root: str | Path, video: str) -> Path:
    return Path(root) / "data" / validate_video_name(video, Path(root) / "data")


def list_stems(folder: str | Path, ext: str) -> list[str]:
    """Sorted stems of the files ``*<ext>`` in ``folder`` (hidden files skipped); FileNotFoundError if missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: directory not found")
    return sorted(p.name[: -len(ext)] for p in folder.iterdir() if p.name.endswith(ext) and not p.name.startswith("."))


def list_frames(root: str | Path, video: str) -> list[str]:
    """Sorted frame stems of ``data/<video>/origin/*.jpg``; DataError if there are none."""
    folder = video_dir(root, video) / "origin"
    stems = list_stems(folder, FRAME_EXT)
    if not stems:
        raise DataError(f"{folder}: no {FRAME_EXT} frames")
    return stems


def list_masks(root: str | Path, video: str) -> list[str]:
    """Sorted stems of ``data/<video>/mask/*.png`` (empty list if the folder does not exist)."""
    folder = video_dir(root, video) / "mask"
    return list_stems(folder, MASK_EXT) if folder.is_dir() else []


def frame_path(root: str | Path, video: str, stem: str) -> Path:
    return video_dir(root, video) / "origin" / f"{stem}{FRAME_EXT}"


def mask_path(root: str | Path, video: str, stem: str) -> Path:
    return video_dir(root, video) / "mask" / f"{stem}{MASK_EXT}"


def check_raw_mask(raw: np.ndarray, path: str | Path) -> np.ndarray:
    """Return ``raw`` if every value is in {0..124, 255}; DataError naming ``path`` otherwise."""
    bad = ~_VALID_RAW[raw]
    if bad.any():
        values = np.unique(raw[bad]).tolist()
        raise DataError(f"{path}: mask values {values[:10]} outside {{0..{VSPW_NUM_CLASSES}, 255}}")
    return raw


def load_raw_mask(path: str | Path) -> np.ndarray:
    """Raw VSPW mask (palette indices). Returns uint8 (H, W) with values in {0..124, 255}."""
    return check_raw_mask(load_label_png(path), path)


def to_train_ids(raw: np.ndarray) -> np.ndarray:
    """Raw mask → train ids: 0 and 255 → 255, c → c − 1. uint8 (H, W) → uint8 (H, W)."""
    return _TRAIN_ID_LUT[raw]


def load_train_ids(path: str | Path) -> np.ndarray:
    """`load_raw_mask` + `to_train_ids`. Returns uint8 (H, W) with values in {0..123, 255}."""
    return to_train_ids(load_raw_mask(path))
