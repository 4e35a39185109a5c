"""Confusion matrix, per-class IoU, mIoU and WIoU exactly as the official VSPW evaluator computes them.

The official script (VSPW_code ``evaluator_test.py``) converts the ground truth to train ids first
(raw 0 and 255 → 255, raw c → c − 1), accumulates ONE confusion matrix over all frames of all videos from
the pixels whose GT is a class (< 124), and then reports

* ``mIoU`` — IoU per class, averaged over the classes that occur in the GT only (a class that is predicted
  but absent from the GT is left out, not counted as 0);
* ``WIoU`` — its "fwIoU": Σ over classes with GT frequency > 0 of ``freq_c · IoU_c``, where ``freq_c`` is
  the class's share of the counted GT pixels.

Internally the GT is held as *codes*: the train ids themselves, uint8, classes ``0 .. C-1`` and every void
value (raw 0 and 255) as `VOID_CODE` (255). Codes make the frame's confusion one histogram of
``code << bits | pred`` with no boolean masking (over runs of equal pairs in raster order, see
`_pair_histogram`), and equal codes ⇔ equal converted GT, which is what the video-consistency metric
compares.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "VOID_CODE",
    "MAX_CLASSES",
    "gt_codes_from_raw",
    "gt_codes_from_train_ids",
    "FrameCounter",
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "weighted_iou",
    "pixel_accuracy",
]

VOID_CODE = 255
MAX_CLASSES = 255  # codes 0..254 can be classes; 255 is void


def gt_codes_from_raw(raw: np.ndarray) -> np.ndarray:
    """VSPW raw mask → train ids: raw 0 and 255 → 255, raw c → c − 1. uint8 (H, W) → uint8 (H, W).

    ``raw − (raw ≠ 255)`` in uint8 arithmetic (0 wraps to 255): two SIMD passes, no lookup table (a gather
    or np.minimum costs ~20x more here). Raw values 125..254 (not VSPW ids) become 124..253, which
    `FrameCounter.add` reports as invalid for C = 124.
    """
    if raw.dtype != np.uint8:
        raise ValueError(f"raw: expected a uint8 mask, got dtype {raw.dtype}")
    return raw - (raw != VOID_CODE).view(np.uint8)


def gt_codes_from_train_ids(train_ids: np.ndarray) -> np.ndarray:
    """GT in train ids (classes ``0..C-1``, 255 ignored) → GT codes (the same values as uint8).

    Integer (H, W) → uint8 (H, W); values outside 0..255 raise here, other non-class values in `FrameCounter.add`.
    """
    if not np.issubdtype(train_ids.dtype, np.integer):
        raise ValueError(f"gt: expected an integer label map, got dtype {train_ids.dtype}")
    if train_ids.dtype != np.uint8:
        if train_ids.size and (train_ids.min() < 0 or train_ids.max() > 255):
            raise ValueError("gt: train ids must lie in 0..255")
        train_ids = train_ids.astype(np.uint8)
    return train_ids


def _check_num_classes(num_classes: int) -> int:
    if not 1 <= int(num_classes) <= MAX_CLASSES - 1:
        raise ValueError(f"num_classes must be in 1..{MAX_CLASSES - 1}, got {num_classes}")
    return int(num_classes)


class FrameCounter:
    """Accumulates the (GT code, prediction) pair histogram of frames, one `np.bincount` per frame.

    The table has 256 rows (GT code) × ``2**bits`` columns (prediction), ``bits`` the width of ``C − 1``;
    rows ``0..C-1`` × columns ``0..C-1`` are the confusion matrix, row `VOID_CODE` counts void pixels,
    rows ``C..254`` would be GT values that are not classes (an error, reported per frame).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.bits = max(1, (self.num_classes - 1).bit_length())
        self.table = np.zeros((256, 1 << self.bits), dtype=np.int64)
        self._change: np.ndarray | None = None  # work buffers of the frame size
        self._scratch: np.ndarray | None = None

    def add(self, codes: np.ndarray, pred: np.ndarray, gt_source: str = "gt", pred_source: str = "prediction") -> None:
        """Count one frame. ``codes`` uint8 (H, W) GT codes; ``pred`` uint8 (H, W) predictions ``0..C-1``.

        Raises ValueError naming ``gt_source`` when the GT holds a value that is neither a class nor void,
        or naming ``pred_source`` when the prediction holds a value ≥ C.
        """
        c = self.num_classes
        if pred.dtype != np.uint8:
            raise ValueError(f"{pred_source}: prediction must be uint8, got dtype {pred.dtype}")
        if pred.size and int(pred.max()) >= c:
            bad = np.unique(pred[pred >= c])[:10].tolist()
            raise ValueError(f"{pred_source}: prediction values {bad} outside 0..{c - 1}")
        if not codes.size:
            return
        if self._change is None or self._change.size != codes.size - 1:
            self._change = np.empty(codes.size - 1, dtype=bool)
            self._scratch = np.empty_like(self._change)
        counts, seen = _pair_histogram(codes.ravel(), pred.ravel(), self.bits, self._change, self._scratch)
        bad = seen[(seen >= c) & (seen != VOID_CODE)]
        if bad.size:
            rows = np.unique(bad).tolist()[:10]
            raw = [r + 1 for r in rows]
            raise ValueError(
                f"{gt_source}: ground-truth train ids {rows} (raw mask values {raw}) are neither classes "
                f"0..{c - 1} nor void"
            )
        flat = self.table.reshape(-1)
        np.add(flat[: counts.size], counts, out=flat[: counts.size], casting="unsafe")

    @property
    def confusion(self) -> np.ndarray:
        """int64 (C, C): rows GT class, columns predicted class."""
        c = self.num_classes
        return self.table[:c, :c].copy()

    @property
    def void_pixels(self) -> int:
        return int(self.table[VOID_CODE].sum())


def _pair_histogram(
    codes: np.ndarray, pred: np.ndarray, bits: int, change: np.ndarray, scratch: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of the pairs ``codes << bits | pred`` of one frame, counting runs when that is cheaper.

    Label maps are piecewise constant: in raster order a 854x480 frame has a few thousand runs of equal
    (GT, prediction) pairs, not 410k independent values. Histogramming each run's pair weighted by its
    length is exact (integer weights < 2**53) and several times faster than a bincount over every pixel
    (and builds the uint16 pair index only at run starts); noisy maps (runs > 1/4 of the pixels) take the
    plain bincount. ``codes``/``pred`` are flat uint8 (N,), ``change``/``scratch`` bool work buffers
    (N − 1,), reused because fresh frame-sized temporaries cost page faults.

    Returns (counts (max pair + 1,) float64 or int64, GT codes of the runs or of the histogram's pairs).
    """
    np.not_equal(codes[1:], codes[:-1], out=change)
    change |= np.not_equal(pred[1:], pred[:-1], out=scratch)
    boundaries = np.flatnonzero(change)
    if boundaries.size * 4 > codes.size:
        idx = codes.astype(np.uint16)
        idx <<= bits
        idx |= pred
        counts = np.bincount(idx)
        return counts, np.flatnonzero(counts) >> bits
    starts = np.empty(boundaries.size + 1, dtype=np.intp)
    starts[0] = 0
    np.add(boundaries, 1, out=starts[1:])
    lengths = np.diff(starts, append=codes.size)
    gt_at = codes[starts]
    idx = gt_at.astype(np.uint16)
    idx <<= bits
    idx |= pred[starts]
    return np.bincount(idx, weights=lengths), gt_at


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion of one label map pair. ``gt`` train ids (H, W) (255 ignored), ``pred`` (H, W) in 0..C-1.

    Returns int64 (C, C), rows GT, columns prediction.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"gt shape {gt.shape} != pred shape {pred.shape}")
    counter = FrameCounter(num_classes)
    counter.add(gt_codes_from_train_ids(gt), np.asarray(pred).astype(np.uint8, copy=False))
    return counter.confusion


def _iou_all(confusion: np.ndarray) -> np.ndarray:
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=1) + cm.sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / union


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU per class, NaN for classes absent from the GT (the official mean leaves them out). (C,) float64."""
    iou = _iou_all(confusion)
    iou[np.asarray(confusion).sum(axis=1) == 0] = np.nan
    return iou


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in the GT; NaN when no GT pixel was counted."""
    present = np.asarray(confusion).sum(axis=1) > 0
    if not present.any():
        return float("nan")
    return float(np.nansum(_iou_all(confusion)[present]) / present.sum())


def weighted_iou(confusion: np.ndarray) -> float:
    """The official fwIoU: Σ_{freq_c > 0} freq_c · IoU_c, freq_c = GT pixels of c / all counted pixels."""
    cm = np.asarray(confusion, dtype=np.float64)
    total = cm.sum()
    if total == 0:
        return float("nan")
    freq = cm.sum(axis=1) / total
    present = freq > 0
    return float((freq[present] * _iou_all(cm)[present]).sum())


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Correct counted pixels / counted pixels (GT a class); NaN when none."""
    cm = np.asarray(confusion)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")
