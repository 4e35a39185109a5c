"""The official nearest-neighbour warp of VSPW_code's TC_cal.py, as a source map per frame pair.

The warp keeps the official ``flowwarp`` exactly, quirks included: ``grid_sample`` with ``mode='nearest'``,
``align_corners=False``, zeros outside, and the sampling grid normalised by W−1 and H−1 (the convention of
``align_corners=True``). A pixel (x, y) with flow (u, v) therefore reads frame t+1 at
((x+u)·W/(W−1) − ½, (y+v)·H/(H−1) − ½), rounded half to even; points outside the frame read class 0. With
zero flow at 854×480 the last column and row (1,333 pixels) read outside and become class 0.

The warp is stored as a *source map* (`warp_source`): for each pixel of frame t, 1 + the flat index of the
pixel of frame t+1 it reads, 0 where it reads outside. It is computed by warping the image of those indices
with the same ``grid_sample`` call (float32 holds them exactly below 2²⁴ pixels), so `warp_labels` equals
warping the labels themselves, bit for bit, for every model. The `stcl flow` stage writes these maps
(`stcl.flow.cache`), TC reads them (`stcl.metrics.tc`). torch is imported only by `warp_source`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["warp_source", "warp_labels"]


def warp_source(flow: "torch.Tensor") -> "torch.Tensor":
    """Source map of the official warp: flow float (2, H, W) or (N, 2, H, W) px → int32 (H, W) / (N, H, W).

    Value 1 + y'·W + x' where pixel (x, y) of frame t reads pixel (x', y') of frame t+1; 0 where it reads
    outside the frame (class 0 in TC_cal.py). Runs on the flow's device.
    """
    import torch
    import torch.nn.functional as F

    squeeze = flow.ndim == 3
    flow = flow[None] if squeeze else flow
    n, two, h, w = flow.shape
    if two != 2 or h * w >= 2**24:
        raise ValueError(f"flow must be (N, 2, H, W) with H·W < 2^24, got {tuple(flow.shape)}")
    ys, xs = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=torch.float32),
        torch.arange(w, device=flow.device, dtype=torch.float32),
        indexing="ij",
    )
    gx = 2.0 * (xs + flow[:, 0].float()) / max(w - 1, 1) - 1.0
    gy = 2.0 * (ys + flow[:, 1].float()) / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)  # (N, H, W, 2)
    index = torch.arange(1, h * w + 1, device=flow.device, dtype=torch.float32).view(1, 1, h, w).expand(n, 1, h, w)
    src = F.grid_sample(index, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
    src = src.to(torch.int32)
    return src[0] if squeeze else src


def warp_labels(next_pred: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Prediction of t+1 (H, W) warped to t through a `warp_source` map (H, W) → (H, W), 0 outside."""
    flat = np.concatenate([np.zeros(1, next_pred.dtype), next_pred.reshape(-1)])
    return flat[source]
