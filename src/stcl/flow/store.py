"""Reading a `stcl flow` folder (layout in `stcl.flow.cache`) without torch: what `stcl evaluate` needs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["FLOWS_FORMAT", "INDEX", "read_flows_index", "read_video_sources"]

FLOWS_FORMAT = "stcl-flows/1"
INDEX = "flows.json"


def read_flows_index(folder: str | Path) -> dict:
    """``flows.json`` of a `compute_flows` folder; one-line errors naming the file."""
    path = Path(folder) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path}: flows index not found (run `stcl flow` first)")
    try:
        index = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(index, dict) or index.get("format") != FLOWS_FORMAT:
        raise ValueError(f"{path}: not a {FLOWS_FORMAT} index")
    return index


def read_video_sources(folder: str | Path, video: str) -> tuple[list[str], np.ndarray]:
    """(frame stems (L,), source maps int32 (L−1, H, W)) of one video of a `compute_flows` folder."""
    path = Path(folder) / f"{video}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: flows of video {video} not found")
    try:
        with np.load(path) as data:
            return [str(s) for s in data["frames"]], data["source"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: unreadable flows ({err})") from None
