"""Shape-generic forms of the few operations whose exported graph would otherwise hold the export size.

`stcl export` traces the segmentor once (`torch.onnx.export(..., dynamo=True)`) with symbolic batch, height
and width. Most operations become shape-generic ONNX nodes by themselves; the ones here do not, because
their decomposition specialises on the size seen at export (mmsegmentation#1840, mmdeploy#658: the PPM's
adaptive pooling; timm#1844, microsoft/Swin-Transformer#301: Swin's window grid and shift mask). Each
function is the same mathematics written with tensor arithmetic on the symbolic sizes.

The model calls these forms only while it is being exported (``torch.compiler.is_exporting()``); eager
PyTorch keeps its kernels, so training, inference and the mmseg/official equivalence tests compute exactly
what they computed before. That the two forms agree at sizes the export never saw is what
``tests/test_export_onnx.py`` checks (onnxruntime against eager torch, ≤ 1e-4 of the largest logit).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["exporting", "ceil_div", "ceil_to", "adaptive_avg_pool2d", "swin_shift_mask"]


def exporting() -> bool:
    """True while `torch.export` (and so the ONNX exporter) traces the model."""
    return torch.compiler.is_exporting()


def ceil_div(size, divisor: int):  # noqa: ANN001, ANN201 - an int, or a symbolic int while exporting
    """⌈size / divisor⌉ as ``(size + d - 1) // d``.

    Sizes are written with floor division only (never ``-size % d``), because the exporter's symbolic
    shapes simplify nested ``//`` quickly but nested ``%`` of negative sizes very slowly (a Swin export
    took minutes with the ``%`` form, seconds with this one); the integers are the same.
    """
    return (size + divisor - 1) // divisor


def ceil_to(size, multiple: int):  # noqa: ANN001, ANN201
    """``size`` rounded up to a multiple of ``multiple`` (``size + (-size % m)``, see `ceil_div`)."""
    return ceil_div(size, multiple) * multiple


def _pool_matrix(size: int, out: int, like: Tensor) -> Tensor:
    """(out, size) averaging matrix of adaptive pooling: row i averages ``[⌊i·size/out⌋, ⌈(i+1)·size/out⌉)``,
    the bins of PyTorch's ``adaptive_avg_pool2d`` (and so of mmseg's PPM)."""
    i = torch.arange(out, device=like.device)
    start = torch.div(i * size, out, rounding_mode="floor")
    end = torch.div((i + 1) * size + out - 1, out, rounding_mode="floor")
    j = torch.arange(size, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def adaptive_avg_pool2d(x: Tensor, out: int) -> Tensor:
    """``F.adaptive_avg_pool2d(x, out)`` of a (B, C, H, W) map at any H, W as two matrix products (the
    bins of each output row/column are averaged by a 0/(1/n) matrix built from the symbolic size)."""
    rows = _pool_matrix(x.shape[2], out, x)  # (out, H)
    cols = _pool_matrix(x.shape[3], out, x)  # (out, W)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def swin_shift_mask(hp, wp, window: tuple[int, int], shift: tuple[int, int], like: Tensor) -> Tensor:  # noqa: ANN001
    """Attention mask of a shifted Swin block on a padded (hp, wp) map (multiples of the window):
    (nW, wh·ww, wh·ww), 0 between tokens of one region and -100 otherwise, windows row-major.

    The official code labels the map's three bands per axis with slices ``[0, -wh)``, ``[-wh, -s)``,
    ``[-s, ∞)`` (region id = 3·row band + column band); here each position's band is computed from its
    index, so the mask follows the symbolic size.
    """
    (wh, ww), (sh, sw) = window, shift
    ys = torch.arange(hp, device=like.device)
    xs = torch.arange(wp, device=like.device)
    band_y = (ys >= hp - wh).to(torch.int64) + (ys >= hp - sh).to(torch.int64)
    band_x = (xs >= wp - ww).to(torch.int64) + (xs >= wp - sw).to(torch.int64)
    region = band_y[:, None] * 3 + band_x[None, :]  # (hp, wp)
    windows = region.reshape(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    differ = windows[:, None, :] != windows[:, :, None]  # (nW, N, N)
    return torch.zeros_like(differ, dtype=like.dtype).masked_fill(differ, -100.0)
