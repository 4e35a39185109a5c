"""What evaluation reads besides the dataset reader: the predictions' layout; and atomic result writes.

The ground truth is read by the dataset reader, by the same rules as training reads it: the split file, the
video names and ``GT_ROOT/data/<video>/mask/<frame>.png`` by `stcl.data.vspw`, every label PNG (GT mask or
prediction) by `stcl.data.io.load_label_png` (single channel, mode L or P, decoded whole). Layouts::

    GT_ROOT/<split>.txt                    one video per line (`stcl.data.vspw.read_split`)
    GT_ROOT/data/<video>/mask/<frame>.png  raw VSPW masks (palette): 0 others, 1..124 classes, 255 void
    PRED_ROOT/<video>/<frame>.png          predictions, mode L or P, class ids 0..123 (submission format)

Raw mask values are checked by the metric itself (`stcl.metrics.confusion.FrameCounter`: neither a class nor
void fails naming the mask). Every error names the file it is about.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from stcl.atomic import write_json
from stcl.data.io import DataError
from stcl.data.vspw import MASK_EXT, list_stems, video_dir

__all__ = ["check_predictions", "list_gt_frames", "pred_path", "atomic_write_json"]


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
    """Sorted frame stems of ``GT_ROOT/data/<video>/mask/*.png``, the frames the official script evaluates.

    Hidden files are skipped (`stcl.data.vspw.list_stems`); ``video`` must be a valid name
    (`stcl.data.vspw.validate_video_name`). A missing folder or one without masks fails naming it.
    """
    folder = video_dir(gt_root, video) / "mask"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: GT mask directory not found")
    stems = list_stems(folder, MASK_EXT)
    if not stems:
        raise DataError(f"{folder}: no {MASK_EXT} GT masks")
    return stems


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
