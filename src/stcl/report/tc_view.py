"""What TC sees in one video: the prediction of t against the prediction of t+1 warped back along RAFT's flow.

For up to ``rows`` frame pairs (t, t+1) spread over the video, one row each:

    frame t | prediction t | warped prediction t+1 | disagreement

where the disagreement panel is the frame in dim grey, magenta where the two labels differ (what lowers TC),
and slate blue where the warp reads outside frame t+1 (TC_cal.py gives those pixels class 0, whatever the
prediction: among them the last row and column, the quirk documented in `stcl.metrics.tc`). The warp is the
one TC uses: the source maps of the `stcl flow` folder (`stcl.flow.cache`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stcl.report.figures import panel_rows
from stcl.report.overlay import colorize, side_by_side

__all__ = ["PANEL_TITLES", "disagreement_map", "write_tc_view"]

PANEL_TITLES = ("frame t", "prediction t", "prediction t+1 warped to t", "disagreement")
DISAGREE = np.array([255, 0, 255], dtype=np.uint8)
OUTSIDE = np.array([90, 100, 170], dtype=np.uint8)


def disagreement_map(frame: np.ndarray, pred: np.ndarray, warped: np.ndarray, source: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3): grey frame, magenta where ``pred != warped``, slate blue where ``source == 0``."""
    y = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = np.repeat(np.rint(y * 0.45).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    out[pred != warped] = DISAGREE
    out[source == 0] = OUTSIDE
    return out


def write_tc_view(vspw_root: str | Path, pred_root: str | Path, flows: str | Path, video: str, path: str | Path,
                  rows: int = 4) -> tuple[Path, float]:
    """Write the view of ``video`` to ``path`` (PNG); returns (path, agreeing fraction over the shown pairs)."""
    from stcl.data.vspw import frame_path
    from stcl.flow.store import read_video_sources
    from stcl.data.io import load_label_png
    from stcl.flow.warp import warp_labels
    from stcl.metrics.io import pred_path

    stems, sources = read_video_sources(flows, video)
    if len(sources) == 0:
        raise ValueError(f"{flows}: video {video} has a single frame, no pair to show")
    picks = sorted({int(round(i)) for i in np.linspace(0, len(sources) - 1, min(rows, len(sources)))})
    images, labels, agree, total = [], [], 0, 0
    for t in picks:
        with Image.open(frame_path(vspw_root, video, stems[t])) as img:
            frame = np.asarray(img.convert("RGB"))
        pred = load_label_png(pred_path(pred_root, video, stems[t]))
        warped = warp_labels(load_label_png(pred_path(pred_root, video, stems[t + 1])), sources[t])
        same = int((pred == warped).sum())
        agree, total = agree + same, total + pred.size
        images.append(side_by_side([frame, colorize(pred), colorize(warped),
                                    disagreement_map(frame, pred, warped, sources[t])]))
        labels.append(f"{stems[t]}→{stems[t + 1]}: {100 * same / pred.size:.1f}% agree")
    return panel_rows(images, PANEL_TITLES, labels, path), agree / total
