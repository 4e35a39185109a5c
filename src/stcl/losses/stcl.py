"""Spatial-temporal consistency loss (paper eq. 1-2), computed exactly without the N×(N+M) matrix.

For an anchor i (a valid query pixel) with label y_i, keys K are the clip's valid query pixels (minus i)
and valid reference-frame pixels; P_i = keys with label y_i, N_i = keys with another label, s = i·k/τ::

    L(i) = 1/|P_i| Σ_{p∈P_i} −log( e^{s_p} / (e^{s_p} + Z_i) ),   Z_i = Σ_{n∈N_i} e^{s_n}
         = 1/|P_i| Σ_{p∈P_i} softplus(log Z_i − s_p)
    L    = mean of L(i) over the anchors of the batch with |P_i| ≥ 1   (0, with a graph, when there are none)

Memory: anchors are processed in chunks of at most ``chunk_size`` rows; each chunk builds its (chunk, K)
similarity block inside activation checkpointing, so only one block is alive at a time, in forward and in
backward: O(chunk·K) instead of O(N·K).

Layout: the keys are sorted by class once per clip, and anchors are chunked within one class, so a chunk's
positives are ONE contiguous column block [start, end) and its negatives the two blocks either side. Then
log Z_i = logaddexp(logsumexp(s[:, :start]), logsumexp(s[:, end:])), exact and stable for any τ (logsumexp
shifts by the row max), with no (chunk, K) masks, and softplus runs on the positive block only.

Negative control (``positives="shuffled"``, params ``stcl.positives``): before positives are chosen, each clip's
labels (at feature resolution) are permuted at random over its valid pixels, query and reference frames
together, so every anchor keeps a class with the same pixel counts but its "positives" are no longer the
pixels of its class. Not a recipe: it checks that STCL's effect comes from same-class pairing. (A common
sketch computes Z as per-class sums of exp through a one-hot matmul with a shift by the bound s ≤ 1/τ; that needs a
same-class mask for the positives anyway and underflows Z in float32 for τ ≲ 0.02; tests cover τ = 0.005.)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["spatial_temporal_consistency_loss", "sample_anchors"]

Sampling = Literal["none", "random", "hard"]
Positives = Literal["labels", "shuffled"]


def _chunk_sum(
    anchors: torch.Tensor,
    keys: torch.Tensor,
    start: int,
    end: int,
    self_col: torch.Tensor,
    num_pos: torch.Tensor,
    inv_tau: float,
) -> torch.Tensor:
    """Σ L(i) over one chunk of anchors that share a class.

    anchors (c,D); keys (K,D) sorted by class, the anchors' class occupying columns [start, end);
    self_col (c,) each anchor's own column within that block; num_pos (c,) |P_i| ≥ 1.
    """
    s = (anchors @ keys.T) * inv_tau  # (c,K)
    negatives = [blk for blk in (s[:, :start], s[:, end:]) if blk.shape[1]]
    if not negatives:  # no negative at all: every term is −log(1) = 0
        return s.sum() * 0.0
    log_z = torch.logsumexp(negatives[0], dim=1)
    if len(negatives) == 2:
        log_z = torch.logaddexp(log_z, torch.logsumexp(negatives[1], dim=1))
    terms = F.softplus(log_z[:, None] - s[:, start:end])  # (c,P+1), the anchor's own column included
    is_self = torch.zeros_like(terms, dtype=torch.bool)
    is_self[torch.arange(len(self_col), device=s.device), self_col] = True
    return (terms.masked_fill(is_self, 0.0).sum(dim=1) / num_pos).sum()


def _resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(…,H,W) integer labels → (…,h,w) by nearest neighbour."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    lead = labels.shape[:-2]
    flat = labels.reshape(-1, 1, *labels.shape[-2:]).float()
    out = F.interpolate(flat, size=size, mode="nearest")
    return out.reshape(*lead, *size).to(labels.dtype)


def sample_anchors(
    labels: torch.Tensor,
    max_anchors: int,
    sampling: Sampling,
    *,
    predictions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose at most ``max_anchors`` anchors among N candidates; returns sorted indices into 0..N-1.

    labels (N,) anchor labels; predictions (N,) predicted labels (needed for "hard").
    "random": uniform without replacement. "hard" (ContrastiveSeg): an equal budget per class, half of it
    pixels predicted wrongly (hard), half predicted right (easy), each side topping up the other when short.
    """
    n = labels.numel()
    if n <= max_anchors or sampling == "none":
        return torch.arange(n, device=labels.device)
    if sampling == "random":
        perm = torch.randperm(n, generator=generator, device="cpu").to(labels.device)
        return perm[:max_anchors].sort().values
    if predictions is None:
        raise ValueError("sampling='hard' needs query_predictions (the model's argmax)")
    classes = labels.unique()
    budget = max(1, max_anchors // len(classes))
    chosen = []
    for c in classes:
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator, device="cpu").to(idx.device)]
        wrong = predictions[idx] != c
        hard, easy = idx[wrong], idx[~wrong]
        n_hard = min(len(hard), max(budget // 2, budget - len(easy)))
        n_easy = min(len(easy), budget - n_hard)
        chosen += [hard[:n_hard], easy[:n_easy]]
    return torch.cat(chosen).sort().values[:max_anchors]


def spatial_temporal_consistency_loss(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    references: torch.Tensor | None,
    reference_labels: torch.Tensor | None,
    tau: float = 0.07,
    ignore_index: int = 255,
    *,
    chunk_size: int = 4096,
    sampling: Sampling = "none",
    max_anchors: int | None = None,
    query_predictions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    use_checkpoint: bool = True,
    positives: Positives = "labels",
) -> torch.Tensor:
    """Paper eq. 1-2 over a batch of clips (see the module docstring for the exact definition).

    Args:
        query: (B,D,h,w) projected features of the query frames (L2-normalised here).
        query_labels: (B,H,W) train ids at image (or feature) resolution; resized to (h,w) by nearest.
        references: (B,T,D,h,w) projected features of the reference frames (T may be 0), or None.
        reference_labels: (B,T,H,W) train ids of the references, or None.
        tau: temperature τ.
        ignore_index: label of pixels that are neither anchors nor keys.
        chunk_size: anchors per chunk (memory O(chunk_size · keys)).
        sampling: "none" (every valid query pixel is an anchor, the paper), "random" or "hard".
        max_anchors: anchors kept per clip when sampling.
        query_predictions: (B,H',W') predicted train ids, for "hard" sampling.
        generator: RNG for sampling and for ``positives="shuffled"`` (None: torch's global RNG).
        use_checkpoint: recompute each chunk in backward instead of storing it (set False only to debug).
        positives: "labels" (paper eq. 1: same-class keys) or "shuffled", a negative control: each clip's
            labels permuted over its valid pixels before positives are chosen (module docstring).

    Returns:
        scalar loss (0 connected to the graph when no anchor has a positive).
    """
    if query.dim() != 4:
        raise ValueError(f"query: expected (B,D,h,w), got {tuple(query.shape)}")
    b, d, h, w = query.shape
    if query_labels.dim() != 3 or query_labels.shape[0] != b:
        raise ValueError(f"query_labels: expected (B,H,W) with B={b}, got {tuple(query_labels.shape)}")
    if references is None:
        references = query.new_zeros(b, 0, d, h, w)
        reference_labels = query_labels.new_zeros(b, 0, *query_labels.shape[1:])
    if references.dim() != 5 or references.shape[0] != b or tuple(references.shape[2:]) != (d, h, w):
        raise ValueError(f"references: expected (B,T,D,h,w) = ({b},T,{d},{h},{w}), got {tuple(references.shape)}")
    t = references.shape[1]
    if reference_labels is None or reference_labels.dim() != 4 or tuple(reference_labels.shape[:2]) != (b, t):
        got = None if reference_labels is None else tuple(reference_labels.shape)
        raise ValueError(f"reference_labels: expected (B,T,H,W) with B={b}, T={t}, got {got}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if sampling not in ("none", "random", "hard"):
        raise ValueError(f"sampling must be 'none', 'random' or 'hard', got {sampling!r}")
    if sampling != "none" and max_anchors is None:
        raise ValueError(f"sampling={sampling!r} needs max_anchors")
    if positives not in ("labels", "shuffled"):
        raise ValueError(f"positives must be 'labels' or 'shuffled', got {positives!r}")

    # Similarities are scaled by 1/τ ≈ 14: compute them in float32 even under bf16/fp16 autocast.
    low = (torch.float16, torch.bfloat16)
    with torch.autocast(device_type=query.device.type, enabled=False):
        return _batch_loss(
            query.float() if query.dtype in low else query,
            query_labels,
            references.float() if references.dtype in low else references,
            reference_labels,
            tau=tau,
            ignore_index=ignore_index,
            chunk_size=chunk_size,
            sampling=sampling,
            max_anchors=max_anchors,
            query_predictions=query_predictions,
            generator=generator,
            use_checkpoint=use_checkpoint,
            positives=positives,
        )


def _batch_loss(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    references: torch.Tensor,
    reference_labels: torch.Tensor,
    *,
    tau: float,
    ignore_index: int,
    chunk_size: int,
    sampling: Sampling,
    max_anchors: int | None,
    query_predictions: torch.Tensor | None,
    generator: torch.Generator | None,
    use_checkpoint: bool,
    positives: Positives = "labels",
) -> torch.Tensor:
    """The loss for validated inputs (shapes as `spatial_temporal_consistency_loss`)."""
    b, d, h, w = query.shape
    t = references.shape[1]
    q = F.normalize(query, dim=1).flatten(2).transpose(1, 2)  # (B,hw,D)
    r = F.normalize(references, dim=2).permute(0, 1, 3, 4, 2).reshape(b, t * h * w, d)  # (B,Thw,D)
    ql = _resize_labels(query_labels, (h, w)).reshape(b, -1)
    rl = _resize_labels(reference_labels, (h, w)).reshape(b, -1)
    if positives == "shuffled":
        ql, rl = _shuffled_labels(ql, rl, ignore_index, generator)
    preds = None
    if query_predictions is not None:
        preds = _resize_labels(query_predictions, (h, w)).reshape(b, -1)

    total = query.sum() * 0.0 + references.sum() * 0.0  # keeps a graph when nothing counts
    count = 0
    inv_tau = 1.0 / tau
    for i in range(b):
        qv, rv = ql[i] != ignore_index, rl[i] != ignore_index
        n_q = int(qv.sum())
        if n_q == 0:
            continue
        keys = torch.cat([q[i][qv], r[i][rv]])  # (K,D); keys[:n_q] are the anchors' own pixels
        classes, key_cls = torch.unique(torch.cat([ql[i][qv], rl[i][rv]]), return_inverse=True)
        counts = torch.bincount(key_cls, minlength=len(classes))
        num_pos = counts[key_cls[:n_q]] - 1  # |P_i| per anchor (same-class keys minus itself)
        cand = (num_pos > 0).nonzero().flatten()  # anchors with at least one positive
        if max_anchors is not None and sampling != "none" and len(cand) > max_anchors:
            sub = sample_anchors(
                key_cls[cand],
                max_anchors,
                sampling,
                predictions=None if preds is None else _pred_cls(preds[i][qv][cand], classes),
                generator=generator,
            )
            cand = cand[sub]
        count += len(cand)
        # Sort keys by class: class c occupies sorted columns [bounds[c], bounds[c+1]).
        order = torch.argsort(key_cls, stable=True)
        where_sorted = torch.empty_like(order)
        where_sorted[order] = torch.arange(len(order), device=order.device)
        sorted_keys = keys[order]
        bounds = [0] + torch.cumsum(counts, 0).tolist()
        cand_cls = key_cls[cand]
        for c in cand_cls.unique().tolist():
            members = cand[cand_cls == c]
            start, end = bounds[c], bounds[c + 1]
            for lo in range(0, len(members), chunk_size):
                idx = members[lo : lo + chunk_size]
                pos = where_sorted[idx]
                args = (sorted_keys[pos], sorted_keys, start, end, pos - start, num_pos[idx].to(keys.dtype), inv_tau)
                if use_checkpoint and torch.is_grad_enabled() and keys.requires_grad:
                    total = total + checkpoint(_chunk_sum, *args, use_reentrant=False)
                else:
                    total = total + _chunk_sum(*args)
    return total / count if count else total


def _shuffled_labels(
    ql: torch.Tensor, rl: torch.Tensor, ignore_index: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The negative control's labels: per clip, (B,hw) query and (B,Thw) reference labels permuted at random over
    the clip's valid pixels (both together); ignored pixels stay where they are, each class keeps its count."""
    ql, rl = ql.clone(), rl.clone()
    n = ql.shape[1]
    for i in range(ql.shape[0]):
        both = torch.cat([ql[i], rl[i]])
        valid = (both != ignore_index).nonzero().flatten()
        perm = torch.randperm(len(valid), generator=generator, device="cpu").to(valid.device)
        both[valid] = both[valid[perm]]
        ql[i], rl[i] = both[:n], both[n:]
    return ql, rl


def _pred_cls(pred_ids: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Map predicted train ids into the clip's class indices (ids absent from the clip → −1)."""
    lut = torch.full((int(max(pred_ids.max(), classes.max())) + 1,), -1, dtype=torch.long, device=classes.device)
    lut[classes] = torch.arange(len(classes), device=classes.device)
    return lut[pred_ids.clamp(min=0)]
