"""The one video driver of inference: every command that runs models over videos runs this loop.

A *writer* says what is written; the driver does the rest, the same way for each of them:

* shard selection (`select_shard`: ``--shard i/n`` → ``sorted(videos)[i::n]``, ``n`` checked against the
  params' shard count, `check_record_count` the same for a gather) and the shard record, written last
  (`run_shard`, `stcl.infer.shards.write_record`);
* removal of the temporaries killed runs left (only those of this run's videos, so parallel shards never
  touch each other's work in progress);
* skip-complete and resume: the writer's `Writer.plan` returns None for a finished video (skipped) or the
  work that is left (the models it needs, the frames, the folders);
* frame decoding ahead of the models (`stcl.infer.frames.prefetch`), the one frame loop
  (`stcl.infer.frames.frame_probs`), one progress bar over frames;
* per video folders that appear atomically (`stcl.atomic.atomic_dir`), or written in place where the
  writer resumes frame by frame (`stcl predict`);
* the hold point ``<stage>.video_done.<video>`` once a video is in place (`stcl.hold`, for tests).

Writers: predictions of a split (`stcl.infer.outputs`, stage ``infer``), pseudo labels
(`stcl.infer.pseudo_labels`, stage ``pseudo_label``) and `stcl predict`'s labels (`stcl.infer.video`,
stage ``predict``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from stcl.atomic import atomic_dir, remove_stale_tmp
from stcl.hold import hold
from stcl.infer.frames import frame_probs, prefetch
from stcl.infer.multiscale import TTA
from stcl.infer.shards import parse_shard, shard_videos, write_record
from stcl.infer.sliding import Predictor

__all__ = [
    "VideoWork",
    "Writer",
    "DriverSummary",
    "run_videos",
    "run_shard",
    "select_shard",
    "check_record_count",
]


@dataclass
class VideoWork:
    """What is left of one video, as its writer plans it.

    ``sources``: ``(key, frame file)`` pairs the driver decodes ahead (`stcl.data.vspw.load_image`), or
    ``stream``: ``(key, uint8 (H, W, 3))`` frames already decoded in order (a video file). ``folders``:
    the folders the video's files go to; with ``atomic`` each appears whole (built under a temporary name),
    without it the writer's files land in place (a writer that resumes frame by frame). ``frames``: the
    video's frame count (progress). ``state``: the writer's own per-video data.
    """

    models: Mapping[str, Predictor]
    folders: Sequence[Path]
    frames: int
    sources: Sequence[tuple[Any, Path]] = ()
    stream: Iterable[tuple[Any, np.ndarray]] | None = None
    atomic: bool = True
    state: Any = None


class Writer:
    """What one kind of output writes (subclassed by each writer); the loop, resume, sharding and records
    are the driver's."""

    stage: str  # "infer" | "pseudo_label" | "predict": the record's stage, the bar, the hold point

    def parents(self, videos: Sequence[str]) -> Sequence[tuple[Path, set[str] | None]]:
        """Folders that hold the videos' folders or files, each with the names whose temporaries may go."""
        raise NotImplementedError

    def plan(self, video: str) -> VideoWork | None:
        """None if the video is complete (skipped), else the work left."""
        raise NotImplementedError

    def write_frame(self, work: VideoWork, folders: Sequence[Path], key: Any, probs: Mapping[str, Tensor]) -> None:
        """Write one frame from each model's (C, H, W) probabilities into ``folders`` (the work's, or their
        temporaries)."""
        raise NotImplementedError

    def finish_video(self, work: VideoWork, folders: Sequence[Path]) -> None:
        """Write what a video holds besides its frames (before its folders appear); nothing by default."""

    def record_keys(self, videos: Sequence[str], summary: DriverSummary) -> dict[str, Any]:
        """The shard record's ``frames`` (by default: of the computed videos) and the stage's own keys."""
        return {"frames": summary.frames}


@dataclass
class DriverSummary:
    """What the driver did. ``model_frames`` counts (model, frame) TTA runs; × views = forward passes."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    frames: int = 0  # frames of the computed videos
    model_frames: int = 0
    views: int = 0
    record: dict[str, Any] = field(default_factory=dict)  # the shard record, once `run_shard` wrote one

    @property
    def forward_passes(self) -> int:
        """(model, frame, view) passes (each view is one or more sliding windows)."""
        return self.model_frames * self.views


def _frames_of(work: VideoWork, workers: int) -> Iterable[tuple[Any, np.ndarray]]:
    if work.stream is not None:
        return work.stream
    from stcl.data.vspw import load_image

    keys = [key for key, _ in work.sources]
    return zip(keys, prefetch(load_image, [path for _, path in work.sources], workers))


def run_videos(
    writer: Writer,
    videos: Sequence[str],
    tta: TTA,
    *,
    device: str | torch.device = "cpu",
    workers: int = 1,
    progress: bool = True,
    desc: str | None = None,
) -> DriverSummary:
    """Run ``writer`` over ``videos`` in order: stale temporaries removed, complete videos skipped, the rest
    through the frame loop, each video's folders put in place before the next starts."""
    for parent, names in writer.parents(videos):
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(parent, names)
    summary = DriverSummary(views=len(tta.views))
    todo: list[tuple[str, VideoWork]] = []
    for video in videos:
        work = writer.plan(video)
        (summary.skipped.append(video) if work is None else todo.append((video, work)))
    total = sum(work.frames for _, work in todo)
    with tqdm(total=total, unit="frame", desc=desc or writer.stage, disable=not progress) as bar:
        for video, work in todo:
            done = 0
            with ExitStack() as stack:
                folders = (
                    [stack.enter_context(atomic_dir(f)) for f in work.folders] if work.atomic else list(work.folders)
                )
                for key, _, probs in frame_probs(work.models, tta, _frames_of(work, workers), device):
                    writer.write_frame(work, folders, key, probs)
                    summary.model_frames += len(work.models)
                    done += 1
                    bar.update(1)
                writer.finish_video(work, folders)
            bar.update(work.frames - done)  # frames a resumed video already had
            summary.computed.append(video)
            summary.frames += work.frames
            hold(f"{writer.stage}.video_done.{video}")  # tests: stop here on request (stcl.hold)
    return summary


def run_shard(
    writer: Writer,
    videos: Sequence[str],
    index: int,
    count: int,
    tta: TTA,
    *,
    record: str | Path | None = None,
    record_extra: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    workers: int = 1,
    progress: bool = True,
) -> DriverSummary:
    """Run shard ``index`` of ``count`` (``sorted(videos)[index::count]``) and write its ``record`` last.

    The record (`stcl.infer.shards.write_record`) holds ``record_extra`` (the command's keys) and then the
    writer's `Writer.record_keys`.
    """
    mine = shard_videos(videos, index, count)
    summary = run_videos(
        writer, mine, tta, device=device, workers=workers, progress=progress, desc=f"{writer.stage} {index}/{count}"
    )
    if record is not None:
        keys = writer.record_keys(mine, summary)
        frames = keys.pop("frames")
        summary.record = write_record(
            record, writer.stage, index, count, mine, summary.computed, summary.skipped, frames,
            **(record_extra or {}), **keys,
        )
    return summary


def select_shard(text: str | None, expected: int, key: str) -> tuple[int, int]:
    """``--shard i/n`` → (i, n), with ``n`` equal to the params' shard count ``expected`` (``key`` names it);
    no ``--shard`` is the whole list, (0, 1). ValueError naming ``--shard`` otherwise."""
    if text is None:
        return 0, 1
    index, count = parse_shard(text)
    if count != expected:
        raise ValueError(f"--shard {text}: N must equal {key} = {expected} in the params (the gather expects it)")
    return index, count


def check_record_count(records: Sequence[Any], expected: int, key: str) -> None:
    """A gather reads one record per shard: ValueError naming ``--record`` unless there are ``expected``."""
    if len(records) != expected:
        raise ValueError(f"--record: {len(records)} records given, {key} = {expected} in the params")
