"""Matplotlib for the report: the non-interactive backend, and PNGs written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stcl.atomic import atomic_path

__all__ = ["pyplot", "save_png", "panel_rows"]


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


def panel_rows(rows: Any, titles: tuple[str, ...], labels: Any, path: str | Path) -> Path:
    """One figure of image rows stacked top to bottom, each ``len(titles)`` equal panels side by side: the
    titles above the first row's panels, ``labels[i]`` beside row ``i``; saved as a PNG (80 dpi)."""
    plt = pyplot()
    h, w = rows[0].shape[:2]
    n = len(titles)
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 12 * h / w * len(rows) + 0.6), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.imshow(rows[i], interpolation="nearest")
        ax.set_xticks([(k + 0.5) * w / n for k in range(n)], titles if i == 0 else [""] * n, fontsize=8)
        ax.xaxis.set_ticks_position("top")
        ax.tick_params(length=0)
        ax.set_yticks([])
        ax.set_ylabel(labels[i], fontsize=8)
    fig.tight_layout()
    return save_png(fig, path, dpi=80)
