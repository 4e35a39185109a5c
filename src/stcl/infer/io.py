"""Files written by inference: palette label PNGs, atomic per-video folders, atomic JSON.

A *video folder* (``<out>/<video>/`` of predictions, ``data/<video>/`` of pseudo labels) is built under a
hidden temporary name beside its final place and renamed into place only when every file is written
(`atomic_video_dir`), so a killed job never leaves a half-written folder under the final name. A rerun
sees either the complete folder (and skips it) or nothing (and redoes it); stale temporary folders of
killed runs are removed by `remove_stale_tmp`.

This module imports no torch: `stcl submit` and the tests of the submission use it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "TMP_SUFFIX",
    "label_palette",
    "save_label_png",
    "write_json",
    "write_text",
    "copy_file",
    "atomic_video_dir",
    "remove_stale_tmp",
]

TMP_SUFFIX = ".tmp"


def label_palette() -> list[int]:
    """The 256-entry RGB palette of label PNGs (PASCAL VOC bit-interleaved colour map), flat list of 768 ints.

    Index 255 (void) is white so ignored pixels stand out; the palette only affects how a viewer shows the
    file, never the stored class ids.
    """
    palette: list[int] = []
    for i in range(256):
        r = g = b = 0
        c = i
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    palette[255 * 3 : 256 * 3] = [255, 255, 255]
    return palette


_PALETTE = label_palette()


def _atomic_file(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    _atomic_file(Path(path), lambda tmp: img.save(tmp, format="PNG"))


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (temporary file + os.replace)."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    _atomic_file(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_text(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    _atomic_file(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` as a real file (never a link), atomically."""
    if not Path(src).is_file():
        raise FileNotFoundError(f"{src}: file not found")
    _atomic_file(Path(dst), lambda tmp: shutil.copyfile(src, tmp))


def _is_tmp_of(entry: Path, parent: Path) -> bool:
    return entry.parent == parent and entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX)


def _tmp_owner(tmp_name: str) -> str:
    """Final name of a temporary ``.<name>.<random>.tmp`` (``<name>`` may itself contain dots)."""
    return tmp_name[1 : -len(TMP_SUFFIX)].rsplit(".", 1)[0]


@contextmanager
def atomic_video_dir(final: str | Path) -> Iterator[Path]:
    """Build a folder under a hidden temporary name beside ``final``, then rename it into place.

    Yields the temporary folder (``<parent>/.<name>.<random>.tmp``). On normal exit an existing ``final``
    is replaced; if the body raises, the temporary folder is removed and ``final`` is untouched. A process
    killed inside the body leaves only the hidden temporary folder (see `remove_stale_tmp`).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=TMP_SUFFIX, dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.parent / f".{final.name}.old{TMP_SUFFIX}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def remove_stale_tmp(parent: str | Path, names: set[str] | None = None) -> list[Path]:
    """Remove hidden temporary folders/files (``.<name>.*.tmp``) left in ``parent`` by killed runs.

    Args:
        parent: the folder holding the video folders.
        names: only remove temporaries of these final names (e.g. the videos of this shard, so parallel
            shards writing into the same parent never delete each other's work in progress); None = all.

    Returns the removed paths.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    removed = []
    for entry in sorted(parent.iterdir()):
        if not _is_tmp_of(entry, parent):
            continue
        if names is not None and _tmp_owner(entry.name) not in names:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
