"""Confusion matrix, per-class IoU, mIoU and WIoU exactly as the official VSPW evaluator computes them.

The official script (VSPW_code ``evaluator_test.py``) converts the ground truth to train ids first
(raw 0 and 255 → 255, raw c → c − 1), accumulates ONE confusion matrix over all frames of all videos from
the pixels whose GT is a class (< 124), and then reports

* ``mIoU`` — IoU per class, averaged over the classes that occur in the GT only (a class that is predicted
  but absent from the GT is left out, not counted as 0);
* ``WIoU`` — its "fwIoU": Σ over classes with GT frequency > 0 of ``freq_c · IoU_c``, where ``freq_c`` is
  the class's share of the counted GT pixels.

Internally the GT is held as *codes*: uint8, class ids ``0 .. C-1`` as they are, every void value (raw 0 and
255, train id 255) collapsed to `VOID_CODE` (254). Codes make the frame's confusion a single `np.bincount`
over ``code << bits | pred`` with no boolean masking, and equal codes ⇔ equal converted GT, which is what the
video-consistency metric compares.
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

VOID_CODE = 254
MAX_CLASSES = 254  # codes 0..253 can be classes; 254 is void


def gt_codes_from_raw(raw: np.ndarray) -> np.ndarray:
    """VSPW raw mask → GT codes: raw 0 and 255 → `VOID_CODE`, raw c → c − 1. uint8 (H, W) → uint8 (H, W).

    Two vectorised passes (wrap-around subtract, then min), no lookup table. Raw values 125..254 (not VSPW
    ids) become codes 124..253, which `FrameCounter.add` reports as invalid for C = 124.
    """
    if raw.dtype != np.uint8:
        raise ValueError(f"raw: expected a uint8 mask, got dtype {raw.dtype}")
    codes = raw - np.uint8(1)  # 0 → 255, 255 → 254, c → c - 1
    np.minimum(codes, VOID_CODE, out=codes)
    return codes


def gt_codes_from_train_ids(train_ids: np.ndarray) -> np.ndarray:
    """GT in train ids (classes ``0..C-1``, 255 ignored) → GT codes. Integer (H, W) → uint8 (H, W)."""
    if not np.issubdtype(train_ids.dtype, np.integer):
        raise ValueError(f"gt: expected an integer label map, got dtype {train_ids.dtype}")
    if train_ids.dtype != np.uint8:
        if train_ids.size and (train_ids.min() < 0 or train_ids.max() > 255):
            raise ValueError("gt: train ids must lie in 0..255")
        train_ids = train_ids.astype(np.uint8)
    return np.minimum(train_ids, VOID_CODE)


def _check_num_classes(num_classes: int) -> int:
    if not 1 <= int(num_classes) <= MAX_CLASSES - 1:
        raise ValueError(f"num_classes must be in 1..{MAX_CLASSES - 1}, got {num_classes}")
    return int(num_classes)


class FrameCounter:
    """Accumulates the (GT code, prediction) pair histogram of frames, one `np.bincount` per frame.

    The table has 256 rows (GT code) × ``2**bits`` columns (prediction), ``bits`` the width of ``C − 1``;
    rows ``0..C-1`` × columns ``0..C-1`` are the confusion matrix, row `VOID_CODE` counts void pixels,
    rows ``C..253`` would be GT values that are not classes (an error, reported per frame).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.bits = max(1, (self.num_classes - 1).bit_length())
        self.table = np.zeros((256, 1 << self.bits), dtype=np.int64)

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
        idx = codes.astype(np.uint16)
        idx <<= self.bits
        idx |= pred
        counts = np.bincount(idx.ravel(), minlength=self.table.size).reshape(self.table.shape)
        invalid = counts[c:VOID_CODE].sum(axis=1)
        if invalid.any():
            rows = (np.flatnonzero(invalid) + c).tolist()[:10]
            raw = [r + 1 for r in rows]
            raise ValueError(
                f"{gt_source}: ground-truth train ids {rows} (raw mask values {raw}) are neither classes "
                f"0..{c - 1} nor void"
            )
        self.table += counts

    @property
    def confusion(self) -> np.ndarray:
        """int64 (C, C): rows GT class, columns predicted class."""
        c = self.num_classes
        return self.table[:c, :c].copy()

    @property
    def void_pixels(self) -> int:
        return int(self.table[VOID_CODE].sum())


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
