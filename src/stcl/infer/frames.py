"""The one frame loop of inference: frames in, each model's TTA probabilities per frame out.

`frame_probs` takes frames in order (any iterable of ``(key, uint8 (H, W, 3) image)``), collects runs of
consecutive frames of one size into groups of `stcl.infer.multiscale.frames_per_group` frames, runs each
model's multi-scale + flip TTA once per group (windows of one view across the group's frames share
batches) and yields every frame with its probabilities, in input order. Frames are independent (no
temporal smoothing, as in the paper); grouping only fills batches. The writers consume it:
`stcl.infer.outputs` (predictions: label PNGs of a split, `stcl predict`'s labels) and
`stcl.infer.pseudo_labels` (thresholded teacher labels).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from stcl.infer.multiscale import TTA, frames_per_group, tta_probs
from stcl.infer.sliding import Predictor

__all__ = ["image_tensor", "prefetch", "frame_probs", "blend", "to_class_ids"]

K = TypeVar("K")


def image_tensor(image: np.ndarray, device: str | torch.device = "cpu") -> Tensor:
    """uint8 (H, W, 3) RGB → float32 (3, H, W) in 0..255 on ``device``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    array = np.require(image, dtype=np.uint8, requirements=["C", "W"])  # PIL arrays are read-only
    return torch.from_numpy(array).to(device).permute(2, 0, 1).float()


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


def _groups(frames: Iterable[tuple[K, np.ndarray]], tta: TTA) -> Iterator[list[tuple[K, np.ndarray]]]:
    """Runs of consecutive equal-sized frames, at most `frames_per_group` long."""
    group: list[tuple[K, np.ndarray]] = []
    limit = 1
    for key, image in frames:
        if group and (len(group) == limit or group[0][1].shape != image.shape):
            yield group
            group = []
        if not group:
            limit = frames_per_group(tta, image.shape[0], image.shape[1])
        group.append((key, image))
    if group:
        yield group


@torch.inference_mode()
def frame_probs(
    models: Mapping[str, Predictor],
    tta: TTA,
    frames: Iterable[tuple[K, np.ndarray]],
    device: str | torch.device = "cpu",
) -> Iterator[tuple[K, np.ndarray, dict[str, Tensor]]]:
    """Each model's TTA probabilities of every frame, in input order.

    Args:
        models: name → predictor ``(B, 3, h, w) float 0..255 → (B, C, h, w)`` logits, on ``device``.
        tta: scales, flips, window, windows per batch.
        frames: ``(key, uint8 (H, W, 3) RGB)`` in order.
        device: where the frames go.

    Yields:
        ``(key, image, {name: float32 (C, H, W) probabilities on device})`` per frame.
    """
    if not models:
        raise ValueError("frame_probs: at least one model is needed")
    for group in _groups(frames, tta):
        images = torch.stack([image_tensor(image, device) for _, image in group])
        probs = {name: tta_probs(predict, images, tta) for name, predict in models.items()}
        classes = {name: p.shape[1] for name, p in probs.items()}
        if len(set(classes.values())) > 1:
            raise ValueError(f"models predict different numbers of classes: {classes}")
        for k, (key, image) in enumerate(group):
            yield key, image, {name: p[k] for name, p in probs.items()}


def blend(probs: Mapping[str, Tensor], members: Sequence[str], weights: Sequence[float]) -> Tensor:
    """Weighted mean ``Σ w_m · probs[m]`` of the members' (C, H, W) probabilities (weights sum to 1)."""
    total: Tensor | None = None
    for m, w in zip(members, weights, strict=True):
        total = probs[m] * w if total is None else total.add_(probs[m], alpha=w)
    if total is None:
        raise ValueError("blend: at least one member is needed")
    return total


def to_class_ids(probs: Tensor) -> np.ndarray:
    """Argmax over classes: (C, H, W) → uint8 (H, W) numpy."""
    if probs.shape[0] > 255:
        raise ValueError(f"{probs.shape[0]} classes do not fit a uint8 label PNG")
    return probs.argmax(0).to(torch.uint8).cpu().numpy()
