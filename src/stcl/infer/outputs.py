"""The predictions writer: one pass over a split, many outputs, each model's TTA probabilities computed once.

A split's inference jobs in the chain ask for several predictions of the same frames: each member alone
(Tables 2-4), the teacher (a weighted subset, Table 4) and the final ensemble (paper 3.4). Here one job
loads the named models once and, for every frame, runs each model that some unfinished output needs
through the multi-scale + flip TTA *once* (`stcl.infer.frames.frame_probs`); every output is then a
weighted mean of those (C, H, W) probabilities (`stcl.infer.frames.blend`)::

    probs_out = Σ_{m ∈ members(out)} w_m · probs_m,   Σ w_m = 1

Output layout: ``<out>/<video>/<frame>.png`` (palette PNG, class ids 0..123, frame size) and, with
``save_probs``, ``<out>/<video>/<frame>.npy`` (float16 (C, H, W) probabilities); `write_prediction` writes
one frame (also `stcl predict`'s labels). Sharding and records: `stcl.infer.shards`. Each
``<out>/<video>/`` folder appears atomically; a rerun skips the videos complete in every output, and for a
video complete in only some outputs runs only the models the missing outputs need. `gather_outputs` checks
the records of all shards and that every video is complete in every output, then writes one manifest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from stcl.atomic import atomic_dir, remove_stale_tmp, write_json
from stcl.hold import hold
from stcl.infer.ensemble import normalized_weights
from stcl.infer.frames import blend, frame_probs, prefetch, to_class_ids
from stcl.infer.io import save_label_png
from stcl.infer.multiscale import TTA
from stcl.infer.shards import folder_complete, gather_records
from stcl.infer.sliding import Predictor

__all__ = ["NAME", "OutputSpec", "OutputsSummary", "write_prediction", "predict_outputs", "gather_outputs"]

NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class OutputSpec:
    """One requested prediction: the weighted mean of ``members``' probabilities, written under ``out``.

    ``weights`` are normalised to sum 1 (equal when not given); ``save_probs`` also writes
    ``<frame>.npy`` float16 (C, H, W) probabilities.
    """

    name: str
    members: tuple[str, ...]
    out: Path
    weights: tuple[float, ...] | None = None
    save_probs: bool = False

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError(f"output name must be letters, digits, '_', '-', '.', got {self.name!r}")
        if not self.members or len(set(self.members)) != len(self.members):
            raise ValueError(f"output {self.name!r}: members must be distinct and non-empty, got {self.members}")
        object.__setattr__(self, "weights", tuple(normalized_weights(len(self.members), self.weights)))

    def files(self, stems: Sequence[str]) -> list[str]:
        """The files of a complete video folder of this output."""
        suffixes = (".png", ".npy") if self.save_probs else (".png",)
        return [f"{s}{suf}" for s in stems for suf in suffixes]


@dataclass
class OutputsSummary:
    """What `predict_outputs` did. ``model_frames`` counts (model, frame) TTA runs; × views = forward passes."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    frames: int = 0
    model_frames: int = 0
    views: int = 0

    @property
    def forward_passes(self) -> int:
        """(model, frame, view) passes (each view is one or more sliding windows)."""
        return self.model_frames * self.views


def check_outputs(models: Sequence[str], outputs: Sequence[OutputSpec]) -> None:
    """ValueError naming an output whose member has no model, or two outputs sharing a folder."""
    if not outputs:
        raise ValueError("outputs: at least one output is needed")
    seen: dict[Path, str] = {}
    for o in outputs:
        missing = [m for m in o.members if m not in models]
        if missing:
            raise ValueError(f"output {o.name!r}: no checkpoint named {', '.join(missing)} (have {', '.join(models)})")
        key = o.out.resolve()
        if key in seen:
            raise ValueError(f"outputs {seen[key]!r} and {o.name!r} write to the same folder {o.out}")
        seen[key] = o.name


def write_prediction(folder: Path, stem: str, probs: Tensor, save_probs: bool = False) -> np.ndarray:
    """Write one frame's prediction: ``<stem>.png`` (argmax class ids) and, optionally, ``<stem>.npy``
    (float16 (C, H, W) probabilities). Returns the uint8 (H, W) class ids."""
    label = to_class_ids(probs)
    save_label_png(folder / f"{stem}.png", label)
    if save_probs:
        np.save(folder / f"{stem}.npy", probs.to(torch.float16).cpu().numpy())
    return label


def predict_outputs(
    models: Mapping[str, Predictor],
    outputs: Sequence[OutputSpec],
    tta: TTA,
    root: str | Path,
    videos: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    workers: int = 1,
    progress: bool = True,
) -> OutputsSummary:
    """Predict ``videos`` of the VSPW root once per model and write every output from the same probabilities.

    Args:
        models: name → predictor ``(B, 3, h, w) float 0..255 → (B, C, h, w)`` logits.
        outputs: what to write (members refer to ``models`` by name).
        tta: scales, flips, sliding window, windows per batch.
        root: VSPW layout root (frames at ``data/<video>/origin/*.jpg``).
        videos: the videos to do (e.g. one shard of a split).
        device: where frames go (the models' device).
        workers: frame-decoding threads ahead of the models.
        progress: tqdm bar over frames.
    """
    from stcl.data.vspw import frame_path, list_frames, load_image

    check_outputs(list(models), outputs)
    for o in outputs:
        o.out.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(o.out, set(videos))
    summary = OutputsSummary(views=len(tta.views))
    frames = {v: list_frames(root, v) for v in videos}
    todo: list[tuple[str, list[OutputSpec]]] = []
    for v in videos:
        missing = [o for o in outputs if not folder_complete(o.out / v, o.files(frames[v]))]
        (todo.append((v, missing)) if missing else summary.skipped.append(v))
    bar = tqdm(total=sum(len(frames[v]) for v, _ in todo), unit="frame", desc="infer", disable=not progress)
    with bar:
        for video, missing in todo:
            needed = {n: p for n, p in models.items() if any(n in o.members for o in missing)}
            stems = frames[video]
            images = prefetch(load_image, [frame_path(root, video, s) for s in stems], workers)
            with ExitStack() as stack:
                tmps = [stack.enter_context(atomic_dir(o.out / video)) for o in missing]
                for stem, _, probs in frame_probs(needed, tta, zip(stems, images), device):
                    for o, tmp in zip(missing, tmps):
                        write_prediction(tmp, stem, blend(probs, o.members, o.weights or ()), o.save_probs)
                    summary.model_frames += len(needed)
                    bar.update(1)
            summary.computed.append(video)
            summary.frames += len(stems)
            hold(f"infer.video_done.{video}")  # tests: stop here on request (stcl.hold)
    return summary


def gather_outputs(
    records: Sequence[str | Path],
    outputs: Sequence[OutputSpec],
    root: str | Path,
    videos: Sequence[str],
    manifest: str | Path,
) -> dict[str, Any]:
    """Check that the ``n`` shard records cover ``videos`` and every output holds every frame; write ``manifest``.

    Raises:
        FileNotFoundError / ValueError naming the record, shard, output or video that is missing or
        inconsistent; nothing is written then.
    """
    from stcl.data.vspw import list_frames

    loaded = gather_records(records, "infer", videos)
    frames = {v: list_frames(root, v) for v in videos}
    for o in outputs:
        for v in videos:
            if not folder_complete(o.out / v, o.files(frames[v])):
                raise ValueError(f"{o.out / v}: output {o.name!r} is incomplete for video {v} (rerun its shard)")
    result = {
        "format": "stcl-infer-manifest/1",
        "videos": len(videos),
        "frames": sum(len(s) for s in frames.values()),
        "outputs": {o.name: str(o.out) for o in outputs},
        "model_frames": sum(rec["model_frames"] for rec in loaded),
        "forward_passes": sum(rec["forward_passes"] for rec in loaded),
    }
    write_json(manifest, result)
    return result
