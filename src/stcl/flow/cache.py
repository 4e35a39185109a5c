"""The `stcl flow` stage: RAFT flows of a split's videos, computed once and stored as warp source maps.

Flows do not depend on the model evaluated, so they are one job (RAFT is the GPU cost of TC) and every
model's `stcl evaluate --flows` reads them (`stcl.metrics.tc`): five models cost one RAFT pass.

Layout of the output folder (written whole under a temporary name, then renamed: `stcl.atomic.atomic_dir`)::

    flows.json        {"format": "stcl-flows/2", split, video_limit, videos: [...], pairs, weights,
                       weights_sha256, per_video: {<video>: {frames, size: [H, W], frames_sha256, sha256}}, ...}
    <video>.npz       video: str; frames: (L,) str, the sorted frame stems; offset: int32 (L−1, H, W), pair t → t+1

``flows.json`` records what the flows were computed from: the split, its videos, each video's frame count,
size and the SHA-256 of the frame files read (`stcl.flow.store.frames_sha256`), the SHA-256 of the RAFT
file, and of each ``<video>.npz``. `stcl evaluate --flows` checks them against what it evaluates
(`stcl.flow.store.check_flows_inputs`) and refuses flows of anything else in one line.

The warp of pair t is `stcl.flow.warp.warp_source` of the flow from frame t to t+1: for each pixel p of
frame t, the pixel p' of frame t+1 whose label it takes, or outside the frame. This is exactly what TC reads
of the flow (the nearest-neighbour warp of TC_cal.py), stored losslessly as the offset p' − p
(`stcl.flow.store.encode_offsets`; ``OUTSIDE`` = −2³¹), compressed; the flow itself (float32, 3.3 MB per
854×480 pair) is not kept.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stcl.flow.raft import RAFT_ITERS, load_raft, raft_flow
from stcl.flow.store import FLOWS_FORMAT, INDEX, encode_offsets, file_sha256, frames_sha256, select_videos
from stcl.flow.warp import warp_source

__all__ = ["FlowRun", "compute_flows"]


@dataclass(frozen=True)
class FlowRun:
    videos: int
    pairs: int
    seconds: float


def _read_frame(path: Path) -> torch.Tensor:
    """RGB frame → uint8 (3, H, W), as TC_cal.py's ``np.array(Image.open(...))``."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: frame not found") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable frame ({err})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("tc.device is cuda but no CUDA device is available")
    return torch.device(name)


def compute_flows(
    vspw_root: str | Path,
    weights: str | Path,
    out: str | Path,
    split: str = "val",
    limit: int | str = 100,
    device: str = "auto",
    progress: bool | None = None,
) -> FlowRun:
    """RAFT flow of every consecutive frame pair of the first ``limit`` videos of ``split`` → ``out`` folder.

    Frames are ``<root>/data/<video>/origin/*.jpg`` in sorted order, as TC_cal.py lists them; one pair at a
    time (batch 1, as the official script). Errors name the file; nothing is left under ``out`` on failure.
    """
    from tqdm import tqdm

    from stcl.atomic import atomic_dir, atomic_path
    from stcl.data.vspw import frame_path, list_frames, read_split

    start = time.perf_counter()
    videos = select_videos(read_split(vspw_root, split), limit)
    frames = {v: list_frames(vspw_root, v) for v in videos}
    dev = _device(device)
    model = load_raft(weights, dev)
    total = sum(max(len(f) - 1, 0) for f in frames.values())
    show = progress or (progress is None and sys.stderr.isatty())
    bar = tqdm(total=total, desc="RAFT flow", unit="pair", disable=not show)
    out = Path(out)
    per_video = {}
    with atomic_dir(out) as tmp:
        for video in videos:
            stems = frames[video]
            read = frames_sha256(frame_path(vspw_root, video, s) for s in stems)
            sources = []
            prev = _read_frame(frame_path(vspw_root, video, stems[0]))
            for stem in stems[1:]:
                cur = _read_frame(frame_path(vspw_root, video, stem))
                if cur.shape != prev.shape:
                    raise ValueError(
                        f"{frame_path(vspw_root, video, stem)}: size {tuple(cur.shape[1:])} differs from the "
                        f"previous frame's {tuple(prev.shape[1:])}"
                    )
                try:
                    flow = raft_flow(model, prev[None], cur[None])
                except ValueError as err:
                    raise ValueError(f"{frame_path(vspw_root, video, stem)}: {err}") from None
                sources.append(warp_source(flow[0]).cpu().numpy())
                prev = cur
                bar.update(1)
            h, w = prev.shape[1:]
            source = np.stack(sources) if sources else np.zeros((0, h, w), np.int32)
            with atomic_path(tmp / f"{video}.npz") as part:
                with open(part, "wb") as fh:
                    np.savez_compressed(
                        fh, video=np.array(video), frames=np.array(stems), offset=encode_offsets(source)
                    )
            per_video[video] = {
                "frames": len(stems),
                "size": [int(h), int(w)],
                "frames_sha256": read,
                "sha256": file_sha256(tmp / f"{video}.npz"),
            }
        bar.close()
        seconds = time.perf_counter() - start
        index = {
            "format": FLOWS_FORMAT,
            "split": split,
            "video_limit": limit,
            "videos": videos,
            "pairs": total,
            "weights": str(weights),
            "weights_sha256": file_sha256(weights),
            "raft": f"torchvision raft_large, {RAFT_ITERS} iterations, InputPadder padding (VSPW_code TC_cal.py)",
            "device": str(dev),
            "seconds": round(seconds, 3),
            "per_video": per_video,
        }
        (tmp / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return FlowRun(len(videos), total, seconds)
