"""VSPW metrics (mIoU, WIoU, VC_n, per-class IoU) exactly as the official evaluator, and the paper's tables.

Torch-free: `stcl evaluate` and `stcl tables` import only numpy, PIL, pandas and matplotlib.
"""

from stcl.metrics.confusion import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy, weighted_iou
from stcl.metrics.consistency import ConsistencyCounter, pooled_vc, window_counts
from stcl.metrics.evaluate import (
    DEFAULT_VC_LENGTHS,
    NUM_CLASSES,
    EvaluationResult,
    VideoStats,
    evaluate_arrays,
    evaluate_dirs,
    summarize,
)

__all__ = [
    "NUM_CLASSES",
    "DEFAULT_VC_LENGTHS",
    "EvaluationResult",
    "VideoStats",
    "evaluate_arrays",
    "evaluate_dirs",
    "summarize",
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "weighted_iou",
    "pixel_accuracy",
    "ConsistencyCounter",
    "window_counts",
    "pooled_vc",
]
