"""Evaluate predictions against VSPW ground truth: mIoU, WIoU, VC_n and per-class IoU (no torch).

Two entry points share one per-video kernel (`VideoEvaluator`):

* `evaluate_dirs(gt_root, pred_root, split)` — PNG files, one task per video, videos spread over worker
  processes; each video is read once, frame by frame, so memory is one frame per worker.
* `evaluate_arrays({video: (gt_frames, pred_frames)})` — in-memory label maps (GT as train ids).

Both return an `EvaluationResult`. Per-video statistics are integers merged in split order, and VC uses
`math.fsum`, so results are identical for any worker count or completion order.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stcl.data.classes import VSPW_NUM_CLASSES
from stcl.data.io import load_label_png
from stcl.data.vspw import mask_path, read_split
from stcl.metrics.confusion import (
    FrameCounter,
    gt_codes_from_raw,
    gt_codes_from_train_ids,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    weighted_iou,
)
from stcl.metrics.consistency import ConsistencyCounter, pooled_vc
from stcl.metrics.io import check_predictions, list_gt_frames, pred_path

__all__ = [
    "NUM_CLASSES",
    "DEFAULT_VC_LENGTHS",
    "DEFINITION",
    "VideoStats",
    "VideoEvaluator",
    "EvaluationResult",
    "evaluate_video_files",
    "evaluate_arrays",
    "evaluate_dirs",
    "summarize",
]

NUM_CLASSES = VSPW_NUM_CLASSES  # 124: the classes of label_num_dic_final.json
DEFAULT_VC_LENGTHS = (8, 16)
DEFINITION = (
    "official VSPW evaluation (evaluator_test.py, VC_perclip.py): GT to train ids; one confusion matrix over "
    "all frames; mIoU over classes present in GT; WIoU = fwIoU; VC_n over videos with more than n frames, "
    "windows i = 0..len-n-1, void counted, nanmean pooled over all windows"
)


@dataclass
class VideoStats:
    """Integer statistics of one video; everything the metrics need, mergeable in any order."""

    video: str
    frames: int
    confusion: np.ndarray  # int64 (C, C), rows GT, columns prediction
    void_pixels: int
    windows: dict[int, tuple[np.ndarray, np.ndarray]]  # n → (counted, consistent) int64 (L − n,) each


class VideoEvaluator:
    """Per-video kernel: feed frames in order with `add`, then `finish`.

    Args:
        video: name, used in error messages and the result.
        num_classes: C; predictions must be in 0..C-1.
        vc_lengths: the n of VC_n.
    """

    def __init__(self, video: str, num_classes: int = NUM_CLASSES, vc_lengths: Sequence[int] = DEFAULT_VC_LENGTHS):
        self.video = video
        self._counter = FrameCounter(num_classes)
        self._consistency = ConsistencyCounter(vc_lengths)

    def add(self, codes: np.ndarray, pred: np.ndarray, gt_source: str, pred_source: str, copy: bool = True) -> None:
        """One frame: ``codes`` uint8 (H, W) GT codes, ``pred`` uint8 (H, W); the sources name them in errors.

        ``copy=False``: the arrays are the caller's to give away (not modified afterwards), so the rolling
        VC state keeps them instead of copying.
        """
        if codes.shape != pred.shape:
            raise ValueError(
                f"{pred_source}: prediction size {pred.shape[1]}x{pred.shape[0]} != GT size "
                f"{codes.shape[1]}x{codes.shape[0]} of {gt_source}"
            )
        self._counter.add(codes, pred, gt_source, pred_source)
        try:
            self._consistency.add(codes, pred, copy=copy)
        except ValueError as err:
            raise ValueError(f"{gt_source}: {err}") from None

    def finish(self) -> VideoStats:
        c = self._consistency
        return VideoStats(
            video=self.video,
            frames=c.frames,
            confusion=self._counter.confusion,
            void_pixels=self._counter.void_pixels,
            windows={n: c.windows(n) for n in c.lengths},
        )


def evaluate_video_files(
    gt_root: str | Path,
    pred_root: str | Path,
    video: str,
    num_classes: int = NUM_CLASSES,
    vc_lengths: Sequence[int] = DEFAULT_VC_LENGTHS,
) -> VideoStats:
    """Read one video's GT masks (frames listed from the GT, as the official script) and predictions."""
    kernel = VideoEvaluator(video, num_classes, vc_lengths)
    for frame in list_gt_frames(gt_root, video):
        gt_file = mask_path(gt_root, video, frame)
        pred_file = pred_path(pred_root, video, frame)
        codes = gt_codes_from_raw(load_label_png(gt_file))
        try:
            pred = load_label_png(pred_file)
        except FileNotFoundError:
            raise FileNotFoundError(f"{pred_file}: prediction missing for GT frame {gt_file}") from None
        kernel.add(codes, pred, str(gt_file), str(pred_file), copy=False)
    return kernel.finish()


@dataclass
class EvaluationResult:
    """Metrics of a set of videos. Fractions in [0, 1]; NaN where undefined (no GT pixel, no window)."""

    mIoU: float
    WIoU: float
    pixel_accuracy: float
    vc: dict[int, float]
    vc_windows: dict[int, int]
    vc_videos: dict[int, int]
    per_class_iou: np.ndarray  # (C,) float64, NaN for classes absent from the GT
    confusion: np.ndarray  # (C, C) int64
    void_pixels: int
    videos: int
    frames: int
    per_video_vc: dict[str, dict[int, float]] = field(default_factory=dict)

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The metrics JSON body (keys mIoU, WIoU, VC<n>, per_class_IoU, counts)."""
        c = len(self.per_class_iou)
        names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
        if len(names) != c:
            raise ValueError(f"class_names: expected {c} names, got {len(names)}")
        gt_pixels = self.confusion.sum(axis=1)
        out: dict[str, Any] = {"mIoU": self.mIoU, "WIoU": self.WIoU}
        out.update({f"VC{n}": v for n, v in self.vc.items()})
        out["pixel_accuracy"] = self.pixel_accuracy
        out["videos"] = self.videos
        out["frames"] = self.frames
        out["vc_counts"] = {f"VC{n}": {"videos": self.vc_videos[n], "windows": self.vc_windows[n]} for n in self.vc}
        out["per_class_IoU"] = {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, self.per_class_iou)}
        out["gt_class_pixels"] = {name: int(v) for name, v in zip(names, gt_pixels)}
        out["void_pixels"] = self.void_pixels
        return out


def summarize(stats: Iterable[VideoStats], order: Sequence[str] | None = None) -> EvaluationResult:
    """Merge per-video statistics (in ``order`` of video names when given) into the final metrics."""
    by_name = {s.video: s for s in stats}
    if order is not None:
        missing = [v for v in order if v not in by_name]
        if missing:
            raise ValueError(f"no statistics for videos {missing[:5]}")
        ordered = [by_name[v] for v in order]
    else:
        ordered = [by_name[v] for v in sorted(by_name)]
    if not ordered:
        raise ValueError("no video to evaluate")
    confusion = np.sum([s.confusion for s in ordered], axis=0)
    lengths = sorted(ordered[0].windows)
    vc, vc_windows, vc_videos = {}, {}, {}
    for n in lengths:
        vc[n], vc_windows[n] = pooled_vc(s.windows[n] for s in ordered)
        vc_videos[n] = sum(1 for s in ordered if len(s.windows[n][0]) > 0)
    return EvaluationResult(
        mIoU=mean_iou(confusion),
        WIoU=weighted_iou(confusion),
        pixel_accuracy=pixel_accuracy(confusion),
        vc=vc,
        vc_windows=vc_windows,
        vc_videos=vc_videos,
        per_class_iou=iou_per_class(confusion),
        confusion=confusion,
        void_pixels=sum(s.void_pixels for s in ordered),
        videos=len(ordered),
        frames=sum(s.frames for s in ordered),
        per_video_vc={s.video: {n: pooled_vc([s.windows[n]])[0] for n in lengths} for s in ordered},
    )


def evaluate_arrays(
    videos: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    num_classes: int = NUM_CLASSES,
    vc_lengths: Sequence[int] = DEFAULT_VC_LENGTHS,
) -> EvaluationResult:
    """Metrics of in-memory videos: ``{video: (gt_frames, pred_frames)}``, frames in time order.

    GT frames are train ids, integer (H, W) with classes 0..C-1 and 255 ignored (use
    `stcl.metrics.confusion.gt_codes_from_raw` semantics for raw VSPW masks: raw 0/255 → 255, c → c − 1);
    predictions integer (H, W) in 0..C-1.
    """
    stats = []
    for video, (gts, preds) in videos.items():
        if len(gts) != len(preds):
            raise ValueError(f"video {video!r}: {len(gts)} GT frames but {len(preds)} predictions")
        kernel = VideoEvaluator(video, num_classes, vc_lengths)
        for i, (gt, pred) in enumerate(zip(gts, preds)):
            pred = np.asarray(pred)
            gt_source, pred_source = f"video {video!r} GT frame {i}", f"video {video!r} prediction frame {i}"
            if not np.issubdtype(pred.dtype, np.integer):
                raise ValueError(f"{pred_source}: prediction must be integer, got dtype {pred.dtype}")
            if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
                bad = np.unique(pred[(pred < 0) | (pred >= num_classes)])[:10].tolist()
                raise ValueError(f"{pred_source}: prediction values {bad} outside 0..{num_classes - 1}")
            kernel.add(
                gt_codes_from_train_ids(np.asarray(gt)), pred.astype(np.uint8, copy=False), gt_source, pred_source
            )
        stats.append(kernel.finish())
    return summarize(stats, order=list(videos))


def _pool(workers: int) -> cf.ProcessPoolExecutor:
    # forkserver: safe even when the caller has threads (e.g. torch loaded), and workers stay torch-free.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def evaluate_dirs(
    gt_root: str | Path,
    pred_root: str | Path,
    split: str = "val",
    num_classes: int = NUM_CLASSES,
    vc_lengths: Sequence[int] = DEFAULT_VC_LENGTHS,
    workers: int = 1,
    videos: Sequence[str] | None = None,
    progress: bool | None = None,
) -> EvaluationResult:
    """Metrics of ``PRED_ROOT/<video>/<frame>.png`` against ``GT_ROOT`` for the videos of ``<split>.txt``.

    Args:
        workers: processes decoding videos in parallel (1 = in this process).
        videos: evaluate these videos instead of the split list.
        progress: tqdm bar over videos (default: when stderr is a terminal).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    names = list(videos) if videos is not None else read_split(gt_root, split)
    pred_root = Path(pred_root)
    check_predictions(pred_root, {name: list_gt_frames(gt_root, name) for name in names})  # all missing, at once
    from tqdm import tqdm

    bar = tqdm(
        total=len(names),
        desc="evaluate",
        unit="video",
        disable=not (progress or (progress is None and sys.stderr.isatty())),
    )
    stats: list[VideoStats] = []
    args = (num_classes, tuple(vc_lengths))
    if workers == 1 or len(names) == 1:
        for name in names:
            stats.append(evaluate_video_files(gt_root, pred_root, name, *args))
            bar.update()
    else:
        with _pool(min(workers, len(names))) as pool:
            futures = [pool.submit(evaluate_video_files, gt_root, pred_root, name, *args) for name in names]
            try:
                for fut in cf.as_completed(futures):
                    stats.append(fut.result())
                    bar.update()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    bar.close()
    return summarize(stats, order=names)
