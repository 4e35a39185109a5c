"""Image/label file I/O shared by the dataset readers: strict decoding and atomic image writes.

Every reader error names the file: a missing file raises FileNotFoundError, a file that exists but cannot
be used (unreadable, truncated, wrong mode, bad values, size mismatch) raises `DataError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stcl.atomic import atomic_path

__all__ = [
    "DataError",
    "load_image",
    "load_label_png",
    "image_size",
    "save_png",
    "save_jpeg",
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
        raise DataError(f"{path}: expected a single-channel PNG (mode L or P), got mode {img.mode}")
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


def save_png(path: str | Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Write uint8 (H, W) (optionally as palette "P" PNG) or (H, W, 3) RGB PNG atomically."""
    img = Image.fromarray(np.ascontiguousarray(array))
    if palette is not None:
        img = img.convert("P") if img.mode != "L" else img
        img.putpalette(palette)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_jpeg(path: str | Path, array: np.ndarray, quality: int = 95) -> None:
    """Write uint8 (H, W, 3) RGB as JPEG atomically."""
    img = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG", quality=quality)
