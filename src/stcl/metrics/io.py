"""Reading GT masks and predictions for evaluation (minimal PIL decoding) and atomic result writes.

Layouts::

    GT_ROOT/<split>.txt                    one video per line
    GT_ROOT/data/<video>/mask/<frame>.png  raw VSPW masks (palette): 0 others, 1..124 classes, 255 void
    PRED_ROOT/<video>/<frame>.png          predictions, mode L or P, class ids 0..123 (submission format)

Every error names the file it is about.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from stcl.atomic import write_json

__all__ = [
    "check_predictions",
    "read_video_list",
    "list_gt_frames",
    "gt_mask_path",
    "pred_path",
    "read_label_png",
    "atomic_write_json",
]

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def read_video_list(gt_root: str | Path, split: str) -> list[str]:
    """Video names of ``GT_ROOT/<split>.txt`` in file order (blank lines and a missing final newline are fine)."""
    path = Path(gt_root) / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    for name in names:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"{path}: invalid video name {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a video is listed twice")
    if not names:
        raise ValueError(f"{path}: split lists no video")
    return names


def gt_mask_path(gt_root: str | Path, video: str, frame: str) -> Path:
    return Path(gt_root) / "data" / video / "mask" / f"{frame}.png"


def pred_path(pred_root: str | Path, video: str, frame: str) -> Path:
    return Path(pred_root) / video / f"{frame}.png"


def check_predictions(pred_root: str | Path, frames: dict[str, list[str]]) -> None:
    """Every ``<pred_root>/<video>/<frame>.png`` of ``frames`` (video → frame stems) exists; else one
    FileNotFoundError line naming the folder, how many are missing in how many videos, and the first three."""
    pred_root = Path(pred_root)
    if not pred_root.is_dir():
        raise FileNotFoundError(f"{pred_root}: prediction directory not found")
    missing = [pred_path(pred_root, v, f) for v, stems in frames.items() for f in stems]
    missing = [p for p in missing if not p.is_file()]
    if missing:
        first = ", ".join(str(p.relative_to(pred_root)) for p in missing[:3]) + (", …" if len(missing) > 3 else "")
        videos = len({p.parent for p in missing})
        raise FileNotFoundError(
            f"{pred_root}: {len(missing)} predictions missing for frames of {videos} video(s) (first: {first})"
        )


def list_gt_frames(gt_root: str | Path, video: str) -> list[str]:
    """Sorted frame stems of ``GT_ROOT/data/<video>/mask/*.png`` (hidden files skipped, as the official script)."""
    folder = Path(gt_root) / "data" / video / "mask"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: GT mask directory not found")
    stems = sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".png") and not name.startswith("."))
    if not stems:
        raise ValueError(f"{folder}: no .png GT masks")
    return stems


def read_label_png(path: Path) -> np.ndarray:
    """Decode a single-channel PNG (mode L, or P read as its palette indices). Returns uint8 (H, W)."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise ValueError(f"{path}: expected a single-channel PNG (mode L or P), got mode {img.mode}")
            return np.asarray(img)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except _DECODE_ERRORS as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: unreadable PNG ({err})") from None


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def atomic_write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON atomically; NaN becomes null (strict JSON)."""
    write_json(path, _nan_to_none(data), allow_nan=False)
