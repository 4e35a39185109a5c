"""Teacher pseudo labels on unlabeled frames (paper 2.3), sharded by video, and the gather step.

Labelling rule: the teacher's argmax class is kept where its probability is *strictly greater* than the
threshold (paper: "exceed the threshold", 0.5), otherwise the pixel is void (255). A pixel whose maximum is
exactly the threshold is therefore dropped.

Output (a dataset root the VSPW reader reads unchanged)::

    <out_root>/data/<video>/origin/<frame>.jpg   real copies of the source frames (DVC caches them)
    <out_root>/data/<video>/mask/<frame>.png     raw VSPW ids: train id c → c + 1, void 255
    <out_root>/data/<video>/teacher_counts.json  per class: pixels the teacher's argmax gave it, pixels kept,
                                                 and the rule the labels were cut with (``labelled_with``)
    <out_root>/train.txt, label_num_dic_final.json   written by `gather`
    the shard's record (a path given by the caller), written last (`stcl.infer.shards`)

The teacher's probabilities come from the video driver's frame loop (`stcl.infer.driver`, the weighted
mean of its members by `stcl.infer.frames.blend`); this module is the pseudo-label writer
(`PseudoLabelWriter`). Sharding (``sorted(videos)[i::n]``), resume and records are the driver's, the
records' gather `stcl.infer.shards`'. Each video folder appears atomically, its counts with it; a rerun of a shard skips videos whose folder is complete and was labelled
with the same rule (threshold, class-balanced portion, TTA; their statistics are read from its counts) and redoes
the others, so the record never claims a rule the labels on disk were not cut with; the gather checks it.
(The rule is what params shape: threshold, portion, the TTA and the teacher's weights. The teacher's files
are not in it: the workflow empties the dataset when they change, `pseudo_label_init`.)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stcl.atomic import copy_file, write_json, write_text
from stcl.infer.driver import DriverSummary, VideoWork, Writer
from stcl.infer.driver import run_shard as run_driver_shard
from stcl.infer.frames import blend
from stcl.infer.io import save_label_png
from stcl.infer.multiscale import TTA
from stcl.infer.shards import folder_complete, gather_records, listing
from stcl.infer.sliding import Predictor
from stcl.infer.thresholds import keep_class_balanced

__all__ = [
    "IGNORE",
    "keep_confident",
    "to_raw_ids",
    "read_unlabeled_list",
    "Teacher",
    "PseudoLabelWriter",
    "run_shard",
    "gather",
]

IGNORE = 255
_FRAME_EXT = ".jpg"
_COUNTS = "teacher_counts.json"
_RULE_KEYS = ("threshold", "class_balanced_portion", "tta", "teacher_weights")


def keep_confident(probs: Tensor, threshold: float) -> Tensor:
    """Hard pseudo labels: (C, H, W) probabilities → uint8 (H, W) train ids, 255 where max prob <= threshold."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    conf, label = probs.max(dim=0)
    label = label.to(torch.uint8)
    label[conf <= threshold] = IGNORE
    return label


def to_raw_ids(train_ids: np.ndarray, num_classes: int = 124) -> np.ndarray:
    """Train ids → raw VSPW mask values: c → c + 1 for c < num_classes, 255 stays 255. uint8 (H, W)."""
    bad = (train_ids >= num_classes) & (train_ids != IGNORE)
    if bad.any():
        raise ValueError(f"train ids {np.unique(train_ids[bad]).tolist()[:10]} outside 0..{num_classes - 1}")
    raw = train_ids.astype(np.uint8) + 1
    raw[train_ids == IGNORE] = IGNORE
    return raw


def read_unlabeled_list(path: str | Path) -> dict[str, list[str]]:
    """Parse ``unlabeled.txt`` (one ``<video>/<frame stem>`` per line) → {video: [stems in file order]}.

    Raises FileNotFoundError if missing, ValueError naming the file and line for a malformed or duplicate
    entry, or if the list is empty.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: unlabeled frame list not found (run `stcl prepare`)")
    frames: dict[str, list[str]] = {}
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        parts = entry.split("/")
        if len(parts) != 2 or not all(parts) or any(p in (".", "..") or "\\" in p for p in parts):
            raise ValueError(f"{path}:{n}: expected '<video>/<frame>', got {entry!r}")
        if entry in seen:
            raise ValueError(f"{path}:{n}: {entry!r} listed twice")
        seen.add(entry)
        frames.setdefault(parts[0], []).append(parts[1])
    if not frames:
        raise ValueError(f"{path}: no frames listed")
    return frames


def _video_complete(folder: Path, stems: Sequence[str]) -> bool:
    names = [_COUNTS, *(f"origin/{s}{_FRAME_EXT}" for s in stems), *(f"mask/{s}.png" for s in stems)]
    return folder_complete(folder, names)


@dataclass(frozen=True)
class Teacher:
    """The teacher ensemble: name → predictor of each member, and their weights (normalised to sum 1)."""

    models: Mapping[str, Predictor]
    weights: tuple[float, ...]


@dataclass
class Counts:
    """Pixel counts of pseudo-labelled frames, per class in train-id order.

    ``argmax``: pixels whose teacher argmax is the class; ``kept``: those of them above the threshold.
    """

    argmax: np.ndarray
    kept: np.ndarray
    pixels: int = 0

    @classmethod
    def zeros(cls, num_classes: int) -> Counts:
        return cls(np.zeros(num_classes, dtype=np.int64), np.zeros(num_classes, dtype=np.int64))

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.argmax + other.argmax, self.kept + other.kept, self.pixels + other.pixels)

    def to_json(self) -> dict[str, Any]:
        return {"pixels": self.pixels, "argmax_pixels": self.argmax.tolist(), "kept_pixels": self.kept.tolist()}


def _rule(
    threshold: float, class_balanced_portion: float | None, tta: TTA, weights: Sequence[float]
) -> dict[str, Any]:
    """The labelling rule a video folder records (``labelled_with``) and a shard record states: the cut
    (threshold, class-balanced portion), the teacher's TTA and its members' weights, as JSON reads it back."""
    rule = {
        "threshold": threshold,
        "class_balanced_portion": class_balanced_portion,
        "tta": {"scales": tta.scales, "flip": tta.flip, "crop": tta.window.crop, "stride": tta.window.stride,
                "amp": tta.amp},
        "teacher_weights": list(weights),
    }
    return json.loads(json.dumps(rule))


def _labelled_with(folder: Path) -> dict[str, Any] | None:
    """The rule a video folder's labels were cut with; None if its counts do not say (unreadable, older)."""
    try:
        rule = json.loads((folder / _COUNTS).read_text(encoding="utf-8")).get("labelled_with")
    except (OSError, ValueError, AttributeError):
        return None
    return rule if isinstance(rule, dict) else None


def _read_counts(folder: Path, num_classes: int) -> Counts:
    """The counts a finished video folder was written with."""
    path = folder / _COUNTS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        counts = Counts(
            np.asarray(data["argmax_pixels"], dtype=np.int64),
            np.asarray(data["kept_pixels"], dtype=np.int64),
            int(data["pixels"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: unreadable teacher counts ({err}); delete the folder to redo the video") from None
    if counts.argmax.shape != (num_classes,) or counts.kept.shape != (num_classes,):
        raise ValueError(f"{path}: counts for {counts.argmax.shape} classes, expected {num_classes}")
    return counts


def _write_frame(
    folder: Path, stem: str, src: Path, probs: Tensor, threshold: float, num_classes: int,
    portion: float | None = None,
) -> Counts:
    """Write ``mask/<stem>.png`` (raw ids) and a copy of the frame ``origin/<stem>.jpg`` into ``folder``.

    Returns the frame's per-class counts (teacher argmax, kept) and total pixels.
    """
    if probs.shape[0] > num_classes:
        raise ValueError(f"teacher predicts {probs.shape[0]} classes, more than {num_classes}")
    keep = keep_confident(probs, threshold) if portion is None else keep_class_balanced(probs, threshold, portion)
    label = keep.cpu().numpy()
    raw = to_raw_ids(label, num_classes)
    save_label_png(folder / "mask" / f"{stem}.png", raw)
    (folder / "origin").mkdir(exist_ok=True)
    shutil.copyfile(src, folder / "origin" / f"{stem}{_FRAME_EXT}")
    argmax = np.bincount(probs.argmax(dim=0).cpu().numpy().ravel(), minlength=num_classes)[:num_classes]
    kept = np.bincount(label.ravel(), minlength=256)[:num_classes]
    return Counts(argmax.astype(np.int64), kept.astype(np.int64), int(label.size))


class PseudoLabelWriter(Writer):
    """The pseudo-label writer of the video driver (`stcl.infer.driver`): ``data/<video>/`` with the frames'
    masks, copies of the frames and the video's counts; a finished video labelled with another rule is redone."""

    stage = "pseudo_label"

    def __init__(
        self,
        teacher: Teacher,
        tta: TTA,
        frames: Mapping[str, Sequence[str]],
        frame_path: Callable[[str, str], Path],
        out_root: str | Path,
        threshold: float,
        class_balanced_portion: float | None,
        num_classes: int,
    ) -> None:
        self.teacher, self.frames, self.frame_path = teacher, frames, frame_path
        self.data_dir = Path(out_root) / "data"
        self.threshold, self.portion, self.num_classes = threshold, class_balanced_portion, num_classes
        self.rule = _rule(threshold, class_balanced_portion, tta, teacher.weights)
        self.counts = Counts.zeros(num_classes)

    def parents(self, videos: Sequence[str]) -> list[tuple[Path, set[str] | None]]:
        return [(self.data_dir, set(videos))]

    def plan(self, video: str) -> VideoWork | None:
        folder = self.data_dir / video
        if _video_complete(folder, self.frames[video]) and _labelled_with(folder) == self.rule:
            self.counts = self.counts + _read_counts(folder, self.num_classes)
            return None
        sources = [(s, Path(self.frame_path(video, s))) for s in self.frames[video]]
        return VideoWork(self.teacher.models, [folder], len(sources), sources,
                         state=(dict(sources), [Counts.zeros(self.num_classes)]))

    def write_frame(self, work: VideoWork, folders: Sequence[Path], key: Any, probs: Mapping[str, Tensor]) -> None:
        paths, counts = work.state
        teacher_probs = blend(probs, list(self.teacher.models), self.teacher.weights)
        counts[0] = counts[0] + _write_frame(
            folders[0], key, paths[key], teacher_probs, self.threshold, self.num_classes, self.portion
        )

    def finish_video(self, work: VideoWork, folders: Sequence[Path]) -> None:
        video_counts = work.state[1][0]
        write_json(folders[0] / _COUNTS, {**video_counts.to_json(), "labelled_with": self.rule})
        self.counts = self.counts + video_counts

    def record_keys(self, videos: Sequence[str], summary: DriverSummary) -> dict[str, Any]:
        return {"frames": sum(len(self.frames[v]) for v in videos), **self.rule, **self.counts.to_json()}


def run_shard(
    teacher: Teacher,
    tta: TTA,
    frames: Mapping[str, Sequence[str]],
    index: int,
    count: int,
    *,
    frame_path: Callable[[str, str], Path],
    out_root: str | Path,
    record: str | Path,
    threshold: float,
    class_balanced_portion: float | None = None,
    num_classes: int = 124,
    device: str | torch.device = "cpu",
    workers: int = 1,
    progress: bool = True,
) -> DriverSummary:
    """Pseudo-label the videos of shard ``index``/``count`` and write its record last
    (`PseudoLabelWriter` run by `stcl.infer.driver.run_shard`).

    Args:
        teacher: the teacher's members and weights.
        tta: teacher scales/flips and sliding window (`stcl.infer.multiscale.pseudo_label_tta`).
        frames: {video: frame stems}, all unlabeled videos (`read_unlabeled_list`).
        index, count: this shard.
        frame_path: (video, stem) → source frame file (`stcl.data.prepare.unlabeled_frame_path`).
        out_root: dataset root to write (``data/<video>/{origin,mask}``).
        record: where the shard's record goes (written last).
        threshold: keep argmax where max prob > threshold.
        class_balanced_portion: None, or also keep the top portion of each class per frame
            (`stcl.infer.thresholds.keep_class_balanced`).
        num_classes: classes of the label space (raw ids 1..num_classes must be valid VSPW ids).
        device, workers, progress: where frames go, decoding threads, tqdm bar.
    """
    writer = PseudoLabelWriter(
        teacher, tta, frames, frame_path, out_root, threshold, class_balanced_portion, num_classes
    )
    return run_driver_shard(
        writer, list(frames), index, count, tta, record=record, device=device, workers=workers, progress=progress
    )


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def gather(
    frames: Mapping[str, Sequence[str]],
    records: Sequence[str | Path],
    *,
    out_root: str | Path,
    stats_path: str | Path,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Check that the shard records (of shards 0..n-1) cover every unlabeled video exactly once, then write the
    dataset's ``train.txt`` and ``label_num_dic_final.json`` and the statistics JSON.

    Args:
        frames: {video: stems} of all unlabeled videos (`read_unlabeled_list`).
        records: the record of every shard.
        out_root: the pseudo dataset root the shards wrote into.
        stats_path: where the statistics go (results/pseudo/stats.json).
        class_names: names of the train ids (124 VSPW classes).

    Returns the statistics written to ``stats_path``: totals, overall kept fraction, and per class the
    pixels the teacher's argmax gave it, how many of them were kept (``kept_fraction``) and their share of
    all kept pixels.
    """
    from stcl.data.classes import resource_path

    paths = [Path(p) for p in records]
    loaded = gather_records(paths, "pseudo_label", list(frames))
    problems = []
    rule = {key: loaded[0].get(key) for key in _RULE_KEYS}
    differ = [key for key in _RULE_KEYS if any(rec.get(key) != rule[key] for rec in loaded)]
    if differ:
        problems.append(f"shards used different labelling rules ({', '.join(differ)} differ)")
    data_dir = Path(out_root) / "data"
    lost = sorted(v for v in frames if not _video_complete(data_dir / v, frames[v]))
    if lost:
        problems.append(f"{len(lost)} videos incomplete under {data_dir}: {listing(lost)}")
    other = sorted(v for v in frames if v not in lost and _labelled_with(data_dir / v) != rule)
    if other and not differ:
        problems.append(
            f"{len(other)} videos under {data_dir} not labelled with the records' rule (threshold, portion, TTA,"
            f" teacher weights): {listing(other)} (rerun their shards)"
        )
    if problems:
        raise ValueError(f"{paths[0].parent}: pseudo-label shards are not complete: " + "; ".join(problems))
    kept = np.sum([rec["kept_pixels"] for rec in loaded], axis=0).astype(np.int64)
    argmax = np.sum([rec["argmax_pixels"] for rec in loaded], axis=0).astype(np.int64)
    if len(kept) != len(class_names) or len(argmax) != len(class_names):
        raise ValueError(f"{paths[0]}: {len(kept)} per-class counts for {len(class_names)} class names")
    pixels = int(sum(rec["pixels"] for rec in loaded))
    total_kept = int(kept.sum())
    stats = {
        "threshold": loaded[0]["threshold"],
        "class_balanced_portion": loaded[0].get("class_balanced_portion"),
        "rule": "kept where max probability > threshold (strict), else 255"
        + ("" if loaded[0].get("class_balanced_portion") is None else
           f", or among the top {loaded[0]['class_balanced_portion']:g} of its class's pixels in the frame"),
        "shards": len(loaded),
        "videos": len(frames),
        "frames": int(sum(rec["frames"] for rec in loaded)),
        "pixels": pixels,
        "kept_pixels": total_kept,
        "kept_fraction": _ratio(total_kept, pixels),
        "per_class": {
            name: {
                "train_id": c,
                "argmax_pixels": int(argmax[c]),
                "kept_pixels": int(kept[c]),
                "kept_fraction": _ratio(int(kept[c]), int(argmax[c])),
                "share_of_kept": _ratio(int(kept[c]), total_kept),
            }
            for c, name in enumerate(class_names)
        },
    }
    out_root = Path(out_root)
    write_text(out_root / "train.txt", "".join(f"{v}\n" for v in sorted(frames)))
    copy_file(resource_path("vspw_label_num_dic_final.json"), out_root / "label_num_dic_final.json")
    write_json(stats_path, stats)
    return stats
