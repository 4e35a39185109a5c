"""Shape-generic forms of the few operations whose exported graph would otherwise hold the export size.

`stcl export` traces the segmentor once (`torch.onnx.export(..., dynamo=True)`) with symbolic batch, height
and width. Most operations become shape-generic ONNX nodes by themselves; the ones here do not, because
their decomposition specialises on the size seen at export (mmsegmentation#1840, mmdeploy#658: the PPM's
adaptive pooling; timm#1844, microsoft/Swin-Transformer#301: Swin's window grid and shift mask; a ViT's
bicubic position-table resize, whose ``scale_factor`` the exporter turns into the export grid). Each function
is the same mathematics written with tensor arithmetic on the symbolic sizes.

The model calls these forms only while it is being exported (``torch.compiler.is_exporting()``); eager
PyTorch keeps its kernels, so training, inference and the mmseg/official equivalence tests compute exactly
what they computed before. That the two forms agree at sizes the export never saw is what
``tests/test_export_onnx.py`` checks (onnxruntime against eager torch, ≤ 1e-4 of the largest logit).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "exporting",
    "ceil_div",
    "ceil_to",
    "adaptive_avg_pool2d",
    "swin_shift_mask",
    "bicubic_matrix",
    "dinov2_pos_embed",
]


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


def _keys_near(x: Tensor, a: float) -> Tensor:
    """Keys' cubic convolution kernel for |x| ≤ 1: ((a+2)|x| − (a+3))|x|² + 1 (PyTorch's
    ``cubic_convolution1``)."""
    return ((a + 2) * x - (a + 3)) * x * x + 1


def _keys_far(x: Tensor, a: float) -> Tensor:
    """Keys' kernel for 1 ≤ |x| ≤ 2: ((a|x| − 5a)|x| + 8a)|x| − 4a (PyTorch's ``cubic_convolution2``)."""
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def _size(size, like: Tensor) -> Tensor:  # noqa: ANN001
    """A (possibly symbolic) size ≥ 1 as a 0-d int64 tensor, computed in the graph (the last of
    ``arange(size)``, plus one) rather than baked in."""
    return torch.arange(size, device=like.device)[-1] + 1


def _identity(rows: Tensor, cols: Tensor) -> Tensor:
    """(len(rows), len(cols)) float32 matrix with ones where row index = column index."""
    return (rows[:, None] == cols[None, :].to(rows.dtype)).to(torch.float32)


def bicubic_matrix(size_in: int, size_out, offset: float, antialias: bool, like: Tensor) -> Tensor:  # noqa: ANN001
    """(size_out, size_in) float32 matrix ``R`` with ``R @ v`` = PyTorch's bicubic resize (align_corners off) of
    a length-``size_in`` signal ``v`` to ``size_out`` samples, where source pixels per output pixel are
    ``size_in / (size_out + offset)``: ``offset`` 0 is ``F.interpolate(size=…)``, ``offset`` o is
    ``scale_factor=(size_out + o) / size_in`` (the official DINOv2 position resize; its output size is
    ``size_out`` when ``o < 1``).

    ``size_out`` may be symbolic: it enters only through ``torch.arange``, and every value computed from it
    is a tensor (no Python branch). Without ``antialias``, as ATen's ``upsample_bicubic2d``: source
    coordinate ``s = scale·(i + ½) − ½``, taps ⌊s⌋−1 … ⌊s⌋+2 clamped to the border, Keys' weights with
    a = −0.75. With ``antialias``, as ``_upsample_bicubic2d_aa``: the kernel (a = −0.5) is widened by the
    scale when shrinking, taps ``[⌊c − support + ½⌋, ⌊c + support + ½⌋)`` around ``c = scale·(i + ½)``
    within the signal, weights normalised to sum 1, and an axis whose size does not change is copied
    (ATen skips it, whatever the scale factor).
    """
    out = torch.arange(size_out, device=like.device, dtype=torch.float32)
    n = _size(size_out, like).double()
    # as ATen: 1 / scale_factor in double, then float (scale_factor = (size_out + offset) / size_in)
    scale = (1.0 / ((n + offset) / size_in)).float()
    cols = torch.arange(size_in, device=like.device)
    if antialias:
        wide = scale >= 1
        support = torch.where(wide, 2 * scale, torch.full_like(scale, 2.0))
        inv = torch.where(wide, 1 / scale, torch.ones_like(scale))
        center = scale * (out + 0.5)
        lo = torch.clamp(torch.trunc(center - support + 0.5), min=0)
        hi = torch.clamp(torch.trunc(center + support + 0.5), max=size_in)
        x = ((cols[None, :] - center[:, None] + 0.5) * inv).abs()
        w = torch.where(x < 1, _keys_near(x, -0.5), torch.where(x < 2, _keys_far(x, -0.5), torch.zeros_like(x)))
        inside = (cols[None, :] >= lo[:, None]) & (cols[None, :] < hi[:, None])
        w = torch.where(inside, w, torch.zeros_like(w))
        return torch.where(n == size_in, _identity(out, cols), w / w.sum(dim=1, keepdim=True))
    src = scale * (out + 0.5) - 0.5
    base = torch.clamp(torch.floor(src), max=size_in - 1)
    t = torch.clamp(src - base, 0.0, 1.0)
    coeffs = (_keys_far(t + 1, -0.75), _keys_near(t, -0.75), _keys_near(1 - t, -0.75), _keys_far(2 - t, -0.75))
    base = base.to(torch.int64)
    matrix = torch.zeros_like(src[:, None] * cols[None, :])
    for k, c in enumerate(coeffs):  # the four taps; a clamped tap adds its weight to the border pixel
        tap = torch.clamp(base + (k - 1), 0, size_in - 1)
        matrix = matrix + torch.where(tap[:, None] == cols[None, :], c[:, None], torch.zeros_like(c[:, None]))
    return matrix


def dinov2_pos_embed(table: Tensor, grid, *, offset: float, antialias: bool) -> Tensor:  # noqa: ANN001
    """`stcl.models.dino_files.official_dinov2_pos_embed` at a possibly symbolic ``grid`` (gh, gw):
    table (1, M², C) → (1, gh·gw, C), the bicubic resize as ``R_h @ T @ R_wᵀ`` (`bicubic_matrix`).

    The official code returns the table unchanged when the grid is M × M (with ``offset`` 0.1 the resize
    would not be the identity there); here both matrices become the identity when gh = gw = M, a
    ``where`` on sizes computed in the graph, so one graph serves every grid.
    """
    n, dim = table.shape[1], table.shape[2]
    m = math.isqrt(n)
    if m * m != n:
        raise ValueError(f"position table of {n} entries is not square")
    gh, gw = grid
    same = (_size(gh, table) == m) & (_size(gw, table) == m)
    src = torch.arange(m, device=table.device, dtype=torch.float32)
    mats = []
    for size in (gh, gw):
        dst = torch.arange(size, device=table.device, dtype=torch.float32)
        mats.append(torch.where(same, _identity(dst, src), bicubic_matrix(m, size, offset, antialias, table)))
    x = table.float().reshape(m, m, dim).permute(2, 0, 1)  # (C, M, M)
    out = torch.matmul(torch.matmul(mats[0], x), mats[1].transpose(0, 1))  # (C, gh, gw)
    return out.permute(1, 2, 0).reshape(1, gh * gw, dim).to(table.dtype)
