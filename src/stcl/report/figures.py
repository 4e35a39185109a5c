"""Matplotlib for the report: the non-interactive backend, and PNGs written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stcl.atomic import atomic_path

__all__ = ["pyplot", "save_png"]


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend (no display needed); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    """Write ``fig`` to ``path`` (temporary name, then rename) and close it, even when writing fails."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        pyplot().close(fig)
    return path
