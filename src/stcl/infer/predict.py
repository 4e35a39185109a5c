"""Predict the frames of a VSPW split: ensemble + TTA per frame, palette PNGs written per video atomically.

Output layout: ``<out>/<video>/<frame>.png`` (mode "P", class ids 0..123, frame size) and, with
``save_probs``, ``<out>/<video>/<frame>.npy`` (float16 (C, H, W) probabilities). Each video folder is
built under a hidden temporary name and renamed into place when complete; a rerun skips every video whose
folder already holds all its files, and redoes the rest (stale temporaries are removed first).
Frames are independent (no temporal smoothing), as in the paper.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from stcl.infer.ensemble import Member, ensemble_probs
from stcl.atomic import atomic_dir, remove_stale_tmp
from stcl.hold import hold
from stcl.infer.io import save_label_png
from stcl.infer.multiscale import TTA

__all__ = [
    "image_tensor",
    "frame_probs",
    "to_class_ids",
    "prefetch",
    "video_complete",
    "PredictSummary",
    "predict_videos",
]


def image_tensor(image: np.ndarray, device: str | torch.device = "cpu") -> Tensor:
    """uint8 (H, W, 3) RGB → float32 (3, H, W) in 0..255 on ``device``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    array = np.require(image, dtype=np.uint8, requirements=["C", "W"])  # PIL arrays are read-only
    return torch.from_numpy(array).to(device).permute(2, 0, 1).float()


def frame_probs(members: Sequence[Member], tta: TTA, image: np.ndarray, device: str | torch.device) -> Tensor:
    """Ensemble TTA probabilities of one frame: uint8 (H, W, 3) → float32 (C, H, W) on ``device``."""
    return ensemble_probs(members, image_tensor(image, device), tta)


def prefetch(load: Callable[[Path], np.ndarray], paths: Iterable[Path], workers: int) -> Iterator[np.ndarray]:
    """``load(path)`` for each path in order, decoding up to ``workers + 1`` frames ahead in threads."""
    if workers <= 0:
        yield from (load(p) for p in paths)
        return
    todo = iter(paths)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque(pool.submit(load, p) for p in islice(todo, workers + 1))
        while pending:
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(load, nxt))
            yield pending.popleft().result()


def video_complete(folder: Path, stems: Sequence[str], suffixes: Sequence[str] = (".png",)) -> bool:
    """True if ``folder`` exists and holds ``<stem><suffix>`` for every stem and suffix."""
    if not folder.is_dir():
        return False
    present = {p.name for p in folder.iterdir()}
    return all(f"{s}{suf}" in present for s in stems for suf in suffixes)


@dataclass
class PredictSummary:
    """What `predict_videos` did: videos computed, videos skipped as complete, frames computed."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    frames: int = 0


def to_class_ids(probs: Tensor) -> np.ndarray:
    """Argmax over classes: (C, H, W) → uint8 (H, W) numpy."""
    if probs.shape[0] > 255:
        raise ValueError(f"{probs.shape[0]} classes do not fit a uint8 label PNG")
    return probs.argmax(0).to(torch.uint8).cpu().numpy()


def predict_videos(
    members: Sequence[Member],
    tta: TTA,
    root: str | Path,
    videos: Sequence[str],
    out: str | Path,
    *,
    device: str | torch.device = "cpu",
    save_probs: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> PredictSummary:
    """Predict every frame of ``videos`` of the VSPW-layout dataset at ``root`` into ``out``.

    Args:
        members: ensemble members (see `stcl.infer.ensemble.load_members`).
        tta: scales, flips, sliding window.
        root: VSPW layout root (frames at ``data/<video>/origin/*.jpg``).
        videos: video names (e.g. `stcl.data.vspw.read_split(root, "val")`).
        out: output folder; ``<out>/<video>/<frame>.png``.
        device: where the frames go (the members' device).
        save_probs: also write ``<frame>.npy`` float16 (C, H, W) probabilities.
        workers: frame-decoding threads ahead of the model.
        progress: show a tqdm bar over frames.
    """
    from stcl.data.vspw import frame_path, list_frames, load_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out, set(videos))
    suffixes = (".png", ".npy") if save_probs else (".png",)
    frames = {v: list_frames(root, v) for v in videos}
    summary = PredictSummary()
    todo = []
    for v in videos:
        (summary.skipped if video_complete(out / v, frames[v], suffixes) else todo).append(v)
    bar = tqdm(total=sum(len(frames[v]) for v in todo), unit="frame", desc="infer", disable=not progress)
    with bar:
        for video in todo:
            stems = frames[video]
            images = prefetch(load_image, [frame_path(root, video, s) for s in stems], workers)
            with atomic_dir(out / video) as tmp:
                for stem, image in zip(stems, images):
                    probs = frame_probs(members, tta, image, device)
                    save_label_png(tmp / f"{stem}.png", to_class_ids(probs))
                    if save_probs:
                        np.save(tmp / f"{stem}.npy", probs.to(torch.float16).cpu().numpy())
                    bar.update(1)
            summary.computed.append(video)
            hold(f"infer.video_done.{video}")  # tests: stop here on request (stcl.hold)
            summary.frames += len(stems)
    return summary
