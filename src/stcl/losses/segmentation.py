"""The training objective (paper eq. 3): CE(query) + aux_weight·CE_aux(query) + λ2·STCL."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stcl.losses.stcl import spatial_temporal_consistency_loss
from stcl.params import StclParams

__all__ = ["cross_entropy", "segmentor_loss"]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean CE over non-ignored pixels; logits (B,C,h,w) are resized bilinear to labels (B,H,W).

    Returns 0 connected to the graph when every pixel is ignored (plain CE would give NaN).
    """
    if logits.shape[2:] != labels.shape[1:]:
        logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def segmentor_loss(
    out,
    labels: torch.Tensor,
    aux_weight: float,
    stcl: StclParams | None,
    *,
    ignore_index: int = 255,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of one batch of clips.

    Args:
        out: `stcl.models.SegmentorOutput` (logits and aux_logits of the query, proj of all frames or None).
        labels: (B,T,H,W) int64 train ids, frame 0 the query; 255 ignored.
        aux_weight: weight of the auxiliary CE (0.4).
        stcl: STCL params; None or ``enabled: false`` → no STCL term. STCL uses the query frame and, when
            T > 1, the reference frames (T = 1: spatial consistency within the frame).
        generator: RNG for anchor sampling and shuffled positives (``stcl.positives``); None: torch's global RNG.

    Returns:
        (total, parts) with parts {"ce", "aux", "stcl", "total"} as floats (for logging).
    """
    if labels.dim() != 4:
        raise ValueError(f"labels: expected (B,T,H,W), got {tuple(labels.shape)}")
    query_labels = labels[:, 0]
    ce = cross_entropy(out.logits, query_labels, ignore_index)
    aux = cross_entropy(out.aux_logits, query_labels, ignore_index)
    total = ce + aux_weight * aux
    parts = {"ce": float(ce.detach()), "aux": float(aux.detach())}
    if stcl is not None and stcl.enabled:
        if out.proj is None:
            raise ValueError("stcl.enabled needs a projection head: build the segmentor with proj_dim=stcl.dim")
        if out.proj.shape[1] != labels.shape[1]:
            raise ValueError(f"labels: {labels.shape[1]} frames but proj has {out.proj.shape[1]}")
        preds = out.logits.detach().argmax(1) if stcl.sampling == "hard" else None
        loss = spatial_temporal_consistency_loss(
            out.proj[:, 0],
            query_labels,
            out.proj[:, 1:],
            labels[:, 1:],
            tau=stcl.tau,
            ignore_index=ignore_index,
            chunk_size=stcl.chunk_size,
            sampling=stcl.sampling,
            max_anchors=stcl.max_anchors,
            query_predictions=preds,
            generator=generator,
            positives=stcl.positives,
        )
        total = total + stcl.weight * loss
        parts["stcl"] = float(loss.detach())
    parts["total"] = float(total.detach())
    return total, parts
