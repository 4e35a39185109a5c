"""Image/label file I/O shared by the dataset readers: strict decoding and atomic writes.

Every reader error names the file: a missing file raises FileNotFoundError, a file that exists but cannot
be used (unreadable, truncated, wrong mode, bad values, size mismatch) raises `DataError`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DataError",
    "load_image",
    "load_label_png",
    "image_size",
    "save_png",
    "save_jpeg",
    "write_text",
    "atomic_dir",
]


class DataError(ValueError):
    """A dataset file exists but is unusable; the message starts with the file's path."""


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        img = Image.open(path)
        img.load()  # decode now, so a truncated file fails here (LOAD_TRUNCATED_IMAGES stays False)
    except _DECODE_ERRORS as err:
        raise DataError(f"{path}: unreadable or truncated image ({err})") from None
    return img


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB. Returns uint8 (H, W, 3)."""
    img = _open(Path(path))
    return np.array(img.convert("RGB"))  # writable (np.asarray of a PIL image is read-only)


def load_label_png(path: str | Path) -> np.ndarray:
    """Decode a single-channel label PNG (mode "L" or palette "P": the stored indices). Returns uint8 (H, W)."""
    path = Path(path)
    img = _open(path)
    if img.mode not in ("L", "P"):
        raise DataError(f"{path}: label image must be single-channel (mode L or P), got mode {img.mode}")
    return np.array(img, dtype=np.uint8)


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file from its header (does not decode pixels)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            w, h = img.size
    except _DECODE_ERRORS as err:
        raise DataError(f"{path}: unreadable image ({err})") from None
    return h, w


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_png(path: str | Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Write uint8 (H, W) (optionally as palette "P" PNG) or (H, W, 3) RGB PNG atomically."""
    img = Image.fromarray(np.ascontiguousarray(array))
    if palette is not None:
        img = img.convert("P") if img.mode != "L" else img
        img.putpalette(palette)
    _atomic(Path(path), lambda tmp: img.save(tmp, format="PNG"))


def save_jpeg(path: str | Path, array: np.ndarray, quality: int = 95) -> None:
    """Write uint8 (H, W, 3) RGB as JPEG atomically."""
    img = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    _atomic(Path(path), lambda tmp: img.save(tmp, format="JPEG", quality=quality))


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name beside ``final``, then swap it into place.

    Yields the temporary directory. On success an existing ``final`` is replaced (renamed away, then
    removed); on error the temporary directory is removed and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old.{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
