"""The predictions writer: one pass over a split, many outputs, each model's TTA probabilities computed once.

A split's inference jobs in the chain ask for several predictions of the same frames: each member alone
(Tables 2-4), the teacher (a weighted subset, Table 4) and the final ensemble (paper 3.4). Here one job
loads the named models once and, for every frame, runs each model that some unfinished output needs
through the multi-scale + flip TTA *once* (the video driver, `stcl.infer.driver`, runs the frame loop);
every output is then a weighted mean of those (C, H, W) probabilities (`stcl.infer.frames.blend`)::

    probs_out = Σ_{m ∈ members(out)} w_m · probs_m,   Σ w_m = 1

Output layout: ``<out>/<video>/<frame>.png`` (palette PNG, class ids 0..123, frame size) and, with
``save_probs``, ``<out>/<video>/<frame>.npy`` (float16 (C, H, W) probabilities); `write_prediction` writes
one frame (also `stcl predict`'s labels). Sharding, records, resume: `stcl.infer.driver`. Each
``<out>/<video>/`` folder appears atomically; a rerun skips the videos complete in every output, and for a
video complete in only some outputs runs only the models the missing outputs need (`OutputsWriter`). `gather_outputs` checks
the records of all shards and that every video is complete in every output, then writes one manifest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stcl.atomic import write_json
from stcl.infer.driver import DriverSummary, VideoWork, Writer, run_videos
from stcl.infer.ensemble import normalized_weights
from stcl.infer.frames import blend, to_class_ids
from stcl.infer.io import save_label_png
from stcl.infer.multiscale import TTA
from stcl.infer.shards import folder_complete, gather_records
from stcl.infer.sliding import Predictor

__all__ = ["NAME", "OutputSpec", "OutputsWriter", "write_prediction", "predict_outputs", "gather_outputs"]

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


class OutputsWriter(Writer):
    """The predictions writer of the video driver (`stcl.infer.driver`): for each video, the outputs not yet
    complete there, each its own folder ``<out>/<video>/``, and only the models those outputs need."""

    stage = "infer"

    def __init__(self, models: Mapping[str, Predictor], outputs: Sequence[OutputSpec], root: str | Path) -> None:
        check_outputs(list(models), outputs)
        self.models, self.outputs, self.root = models, list(outputs), root

    def parents(self, videos: Sequence[str]) -> list[tuple[Path, set[str] | None]]:
        return [(o.out, set(videos)) for o in self.outputs]

    def plan(self, video: str) -> VideoWork | None:
        from stcl.data.vspw import frame_path, list_frames

        stems = list_frames(self.root, video)
        missing = [o for o in self.outputs if not folder_complete(o.out / video, o.files(stems))]
        if not missing:
            return None
        needed = {n: p for n, p in self.models.items() if any(n in o.members for o in missing)}
        sources = [(s, frame_path(self.root, video, s)) for s in stems]
        return VideoWork(needed, [o.out / video for o in missing], len(stems), sources, state=missing)

    def write_frame(self, work: VideoWork, folders: Sequence[Path], key: Any, probs: Mapping[str, Tensor]) -> None:
        for o, folder in zip(work.state, folders):
            write_prediction(folder, key, blend(probs, o.members, o.weights or ()), o.save_probs)

    def record_keys(self, videos: Sequence[str], summary: DriverSummary) -> dict[str, Any]:
        return {
            "frames": summary.frames,
            "outputs": {o.name: {"members": list(o.members), "weights": list(o.weights or ()), "out": str(o.out)}
                        for o in self.outputs},
            "model_frames": summary.model_frames,
            "forward_passes": summary.forward_passes,
        }


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
) -> DriverSummary:
    """Predict ``videos`` of the VSPW root once per model and write every output from the same probabilities
    (`OutputsWriter` run by `stcl.infer.driver.run_videos`; `stcl infer` runs its shard with `run_shard`).

    Args:
        models: name → predictor ``(B, 3, h, w) float 0..255 → (B, C, h, w)`` logits.
        outputs: what to write (members refer to ``models`` by name).
        tta: scales, flips, sliding window, windows per batch.
        root: VSPW layout root (frames at ``data/<video>/origin/*.jpg``).
        videos: the videos to do.
        device, workers, progress: where frames go, decoding threads, tqdm bar over frames.
    """
    writer = OutputsWriter(models, outputs, root)
    return run_videos(writer, videos, tta, device=device, workers=workers, progress=progress)


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
