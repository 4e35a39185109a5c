"""Validate test-split predictions and pack them as the VSPW challenge submission zip.

The zip holds exactly one entry per test frame, ``<video>/<frame>.png``: a single-channel PNG (palette "P"
or "L") of class ids 0..123 with the frame's size (format inferred from the public baselines; not confirmed
against the challenge server). Validation collects *every* problem (missing file, wrong size, wrong mode,
out-of-range values, unreadable file) and reports the first ones with the total count. No torch here.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stcl.atomic import atomic_path
from stcl.data.classes import VSPW_NUM_CLASSES

__all__ = ["SubmissionError", "Entry", "collect_entries", "validate_prediction", "validate_predictions", "write_zip"]

NUM_CLASSES = VSPW_NUM_CLASSES  # 124: the classes of label_num_dic_final.json


class SubmissionError(ValueError):
    """The predictions do not form a valid submission; the message lists the problems."""


@dataclass(frozen=True)
class Entry:
    """One test frame: its zip name ``<video>/<frame>.png``, the prediction file and the frame file."""

    arcname: str
    prediction: Path
    frame: Path


def _safe_arcname(video: str, stem: str) -> str:
    name = f"{video}/{stem}.png"
    parts = name.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") or "\\" in p or ":" in p for p in parts):
        raise SubmissionError(f"unsafe zip entry name {name!r}")
    return name


def collect_entries(pred_dir: str | Path, root: str | Path, split: str) -> list[Entry]:
    """Every frame of ``split`` under the VSPW ``root``, paired with ``<pred_dir>/<video>/<frame>.png``."""
    from stcl.data.vspw import frame_path, list_frames, read_split

    entries = []
    for video in read_split(root, split):
        for stem in list_frames(root, video):
            entries.append(
                Entry(_safe_arcname(video, stem), Path(pred_dir) / video / f"{stem}.png", frame_path(root, video, stem))
            )
    return entries


def validate_prediction(entry: Entry, num_classes: int = NUM_CLASSES) -> str | None:
    """None if ``entry.prediction`` is a valid prediction of its frame, else a one-line problem naming it."""
    from stcl.data.io import image_size

    path = entry.prediction
    if not path.is_file():
        return f"{path}: missing"
    try:
        with Image.open(path) as img:
            img.load()
            mode, (w, h) = img.mode, img.size
            values = np.asarray(img) if mode in ("P", "L") else None
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as err:
        return f"{path}: unreadable PNG ({err})"
    if mode not in ("P", "L"):
        return f"{path}: mode {mode}, expected single-channel palette (P) or L"
    fh, fw = image_size(entry.frame)
    if (h, w) != (fh, fw):
        return f"{path}: size {h}x{w} (HxW), frame {entry.frame} is {fh}x{fw}"
    assert values is not None
    top = int(values.max()) if values.size else 0
    if top >= num_classes:
        return f"{path}: class id {top} outside 0..{num_classes - 1}"
    return None


def validate_predictions(entries: Sequence[Entry], num_classes: int = NUM_CLASSES, show: int = 20) -> None:
    """Check every entry; SubmissionError listing the first ``show`` problems and the total count."""
    problems = [p for p in (validate_prediction(e, num_classes) for e in entries) if p is not None]
    if problems:
        missing = sum(p.endswith(": missing") for p in problems)
        head = "\n  ".join(problems[:show])
        more = f"\n  ... and {len(problems) - show} more" if len(problems) > show else ""
        raise SubmissionError(
            f"{len(problems)} of {len(entries)} test predictions invalid ({missing} missing):\n  {head}{more}"
        )


def write_zip(entries: Sequence[Entry], out: str | Path) -> Path:
    """Write the zip (entries in the given order, stored uncompressed: PNGs are compressed) atomically."""
    out = Path(out)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for e in entries:
            zf.write(e.prediction, arcname=e.arcname)
    return out
