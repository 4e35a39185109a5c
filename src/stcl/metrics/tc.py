"""TC, the temporal consistency of VSPW_code's TC_cal.py: predictions warped along RAFT's flow, scored as mIoU.

For every consecutive pair (t, t+1) of a video, the prediction of t+1 is warped back to t with the flow from
t to t+1, and one confusion matrix of (prediction t, warped prediction t+1) over all pairs of all videos gives
TC = Σ IoU_c · valid_c / Σ valid_c, valid_c = class c occurs in some prediction t (rows of the matrix), NaN
IoU counted as 0 — the official ``Evaluator.Mean_Intersection_over_Union`` of VSPW_code/utils.py.

The warp is the official ``flowwarp`` exactly, quirks included (`stcl.flow.warp`: outside the frame reads
class 0, so with zero flow at 854×480 the last column and row become class 0); TC reads it as the source maps
the `stcl flow` stage stored (`stcl.flow.store`). Only the first 100 videos of val.txt count in the official
script (`stcl flow --videos`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stcl.data.classes import VSPW_NUM_CLASSES
from stcl.flow.warp import warp_labels

__all__ = ["TC_DEFINITION", "TCCounter", "tc_score", "TCResult", "evaluate_tc"]

TC_DEFINITION = (
    "VSPW_code TC_cal.py: RAFT (raft-things, 20 iterations, InputPadder) flow t→t+1; prediction t+1 warped to t "
    "(grid_sample nearest, align_corners=False, grid normalised by W-1/H-1, outside = class 0); one confusion "
    "matrix (prediction t, warped t+1) over all consecutive pairs; TC = mean IoU over classes predicted at t"
)


@dataclass
class TCCounter:
    """The one confusion matrix of TC: rows prediction t, columns warped prediction t+1, int64 (C, C)."""

    num_classes: int = VSPW_NUM_CLASSES

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.pairs = 0

    def add(self, pred: np.ndarray, warped: np.ndarray, source: str = "prediction") -> None:
        """One pair: ``pred`` (H, W) of frame t and ``warped`` (H, W) from t+1; ids must be < C."""
        if pred.shape != warped.shape:
            raise ValueError(f"{source}: size {pred.shape} differs from the warped next prediction {warped.shape}")
        top = max(int(pred.max(initial=0)), int(warped.max(initial=0)))
        if top >= self.num_classes:
            raise ValueError(f"{source}: class id {top} outside 0..{self.num_classes - 1}")
        codes = pred.astype(np.int64).reshape(-1) * self.num_classes + warped.reshape(-1)
        self.confusion += np.bincount(codes, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)
        self.pairs += 1


def tc_score(confusion: np.ndarray) -> tuple[float, np.ndarray]:
    """(TC, IoU per class (C,) float64, NaN for classes never predicted at t) of a TC confusion matrix."""
    confusion = confusion.astype(np.float64)
    diag = np.diag(confusion)
    rows = confusion.sum(axis=1)
    union = rows + confusion.sum(axis=0) - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = diag / union
    valid = rows > 0
    if not valid.any():
        return float("nan"), np.full(len(diag), np.nan)
    tc = float(np.nansum(iou * valid) / valid.sum())
    return tc, np.where(valid, iou, np.nan)


@dataclass
class TCResult:
    """TC of one model over the videos of a flows folder (`stcl.flow.cache`)."""

    tc: float
    per_class_iou: np.ndarray  # (C,) float64, NaN for classes never predicted at t
    confusion: np.ndarray  # (C, C) int64
    videos: int
    pairs: int
    video_limit: int | str


def evaluate_tc(
    pred_root: str | Path,
    flows: str | Path,
    vspw_root: str | Path,
    split: str = "val",
    raft_weights: str | Path | None = None,
    num_classes: int = VSPW_NUM_CLASSES,
) -> TCResult:
    """TC of the predictions ``<pred_root>/<video>/<frame>.png`` (ids 0..C−1) over a `stcl flow` folder.

    The folder must have been computed from ``split`` of ``vspw_root`` (its videos and frame files) and, when
    given, ``raft_weights`` (`stcl.flow.store.check_flows_inputs`); otherwise one line naming ``flows.json``.
    """
    from stcl.data.vspw import list_frames
    from stcl.flow.store import check_flows_inputs, read_flows_index, read_video_sources
    from stcl.data.io import load_label_png
    from stcl.metrics.io import check_predictions, pred_path

    index = read_flows_index(flows)
    check_flows_inputs(flows, index, vspw_root, split, raft_weights)
    check_predictions(pred_root, {video: list_frames(vspw_root, video) for video in index["videos"]})
    counter = TCCounter(num_classes)
    for video in index["videos"]:
        stems, sources = read_video_sources(flows, video, index)
        if stems != list_frames(vspw_root, video):
            raise ValueError(
                f"{Path(flows) / video}.npz: frame names differ from the frames of {vspw_root}/data/{video}"
            )
        prev = None
        for t, stem in enumerate(stems):
            path = pred_path(pred_root, video, stem)
            try:
                pred = load_label_png(path)
            except FileNotFoundError:
                raise FileNotFoundError(f"{path}: prediction missing for a frame of the flows in {flows}") from None
            top = int(pred.max(initial=0))
            if top >= num_classes:
                raise ValueError(f"{path}: class id {top} outside 0..{num_classes - 1}")
            if pred.shape != sources.shape[1:]:
                raise ValueError(
                    f"{path}: size {pred.shape[1]}x{pred.shape[0]} differs from its frame's "
                    f"{sources.shape[2]}x{sources.shape[1]}"
                )
            if t > 0:
                counter.add(prev, warp_labels(pred, sources[t - 1]), str(path))
            prev = pred
    tc, iou = tc_score(counter.confusion)
    return TCResult(tc, iou, counter.confusion, len(index["videos"]), counter.pairs, index["video_limit"])
