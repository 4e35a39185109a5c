"""Class-balanced pseudo-label thresholds (an option; the recipe keeps the paper's fixed threshold).

A fixed confidence threshold (paper 2.3: 0.5) drops whole classes when the teacher is under-confident on
them: at toy scale none of the teacher's car pixels exceeds 0.5, so the student never sees a pseudo-labelled
car. Class-balanced self-training (Zou et al., "Unsupervised Domain Adaptation for Semantic Segmentation via
Class-Balanced Self-Training", ECCV 2018) instead keeps, for every class, the most confident ``portion`` of
the pixels the teacher assigns to it, i.e. a per-class confidence quantile.

Here a pixel with teacher argmax ``c`` is kept when its confidence exceeds the fixed threshold (so
everything the paper's rule keeps stays kept) **or** it is among the top ``portion`` of class ``c``'s pixels
in its frame. The quantile is taken per frame, not over the whole unlabeled set as in CBST, so that a
frame's label does not depend on how the videos are split into shards or on a resumed run.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["class_quantiles", "keep_class_balanced"]

IGNORE = 255


def class_quantiles(conf: Tensor, label: Tensor, num_classes: int, portion: float) -> Tensor:
    """Per class, the confidence of its ``ceil(portion · n_c)``-th most confident pixel.

    Args:
        conf: (H, W) float, the teacher's max probability per pixel.
        label: (H, W) integer, the teacher's argmax class per pixel.
        num_classes: C.
        portion: in (0, 1], the share of each class's pixels to keep.
    Returns:
        (C,) float: the class's quantile; +inf for a class with no pixel (nothing to keep).
    """
    if not 0.0 < portion <= 1.0:
        raise ValueError(f"portion must be in (0, 1], got {portion}")
    q = torch.full((num_classes,), math.inf, dtype=conf.dtype, device=conf.device)
    flat_conf, flat_label = conf.reshape(-1), label.reshape(-1)
    for c in torch.unique(flat_label).tolist():
        values = flat_conf[flat_label == c]
        k = max(1, math.ceil(portion * values.numel()))
        q[c] = torch.topk(values, k).values[-1]
    return q


def keep_class_balanced(probs: Tensor, threshold: float, portion: float) -> Tensor:
    """Pseudo labels with class-balanced thresholds: (C, H, W) probabilities → uint8 (H, W) train ids.

    A pixel keeps its argmax class ``c`` where max prob > ``threshold`` or max prob >= the quantile of
    `class_quantiles` for ``c`` (the top ``portion`` of ``c``'s pixels, ties kept); else it is 255.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    conf, label = probs.max(dim=0)
    q = class_quantiles(conf, label, probs.shape[0], portion)
    keep = (conf > threshold) | (conf >= q[label])
    out = label.to(torch.uint8)
    out[~keep] = IGNORE
    return out
