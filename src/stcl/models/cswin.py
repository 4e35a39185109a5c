"""CSWin Transformer encoder (Dong et al., "CSWin Transformer: A General Vision Transformer Backbone with
Cross-Shaped Windows", CVPR 2022), written for this project: CSWin is not in timm.

Each block splits its channels (and heads) in two: one half attends inside vertical stripes of width
``split`` (full height), the other inside horizontal stripes of height ``split`` (full width); together a
cross-shaped window. Positions enter through LePE: a depthwise 3×3 conv on V inside each stripe, added to
the attention output. The last stage uses one branch attending over the whole map. Stages are joined by
a 3×3 stride-2 conv + LayerNorm; the stem is a 7×7 stride-4 conv + LayerNorm.

Module names are those of the official implementation (``stage1_conv_embed``, ``stageN.M.{qkv,norm1,proj,
attns.B.get_v,mlp.fc1,mlp.fc2,norm2}``, ``mergeN.{conv,norm}``), so the official ImageNet checkpoints load
with no renaming (`CSWinEncoder.weights_state` drops the classifier; `file_format` tells the layout). Like mmseg's Swin, the segmentation encoder adds one LayerNorm per output stage
(``norm1`` … ``norm4``), freshly initialised. Any input size works, computed as the official segmentation
backbone (microsoft/CSWin-Transformer ``segmentation/backbone/cswin_transformer.py``) computes it: each
branch zero-pads its map to whole stripes *centred* (``pad // 2`` before, the rest after) and crops the
padding after attention; the stem is the bare 7×7 stride-4 conv (padding 2), so an H×W input gives
⌊(H−3)/4⌋+1 rows (480×854 → 120×213), not ⌈H/4⌉.

The stripe size of stage 3 depends on the pretraining resolution (7 for 224-pixel checkpoints, 12 for
384): it is not visible in the weights, so `check_cswin_split` reads it from the file's ``arch`` / ``args``
or its name (``…_224``, ``…_384``) and refuses a file whose split disagrees with the configured backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn
from torch.utils.checkpoint import checkpoint

from stcl.models.dynamic_shapes import ceil_div, exporting
from stcl.models.encoder_base import BuildRequest, Encoder

__all__ = [
    "CSWinEncoder",
    "CSWIN_VARIANTS",
    "build_cswin",
    "build",
    "file_format",
    "convert_cswin_checkpoint",
    "check_cswin_split",
]


class Mlp(nn.Module):
    """fc1 → GELU → fc2 on the channel (last) dim."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LePEAttention(nn.Module):
    """Multi-head attention inside stripes, plus locally-enhanced positional encoding on V.

    Args:
        dim: channels of this branch.
        num_heads: heads of this branch.
        split: stripe width (``direction`` 0, vertical stripes) or height (1, horizontal); ignored for -1.
        direction: 0 vertical stripes, 1 horizontal stripes, -1 the whole map (last stage).
    """

    def __init__(self, dim: int, num_heads: int, split: int, direction: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.split = split
        self.direction = direction
        self.get_v = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def _stripes(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(stripe height, stripe width, stripes down, stripes across) of an (h, w) map: the split axis is
        padded to whole stripes, the other is one stripe of the map's extent."""
        if self.direction == 0:
            return h, self.split, 1, ceil_div(w, self.split)
        if self.direction == 1:
            return self.split, w, ceil_div(h, self.split), 1
        return h, w, 1, 1

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v: (B,H,W,C) → (B,H,W,C)."""
        b, h, w, c = q.shape
        sh, sw, nh, nw = self._stripes(h, w)
        hp, wp = nh * sh, nw * sw
        pad_h, pad_w = hp - h, wp - w
        top, left = pad_h // 2, pad_w // 2  # centred, as the official segmentation backbone
        pad = pad_h or pad_w or exporting()  # an exported graph pads at every size (zero where none is needed)
        heads, hd = self.num_heads, c // self.num_heads

        def windows(x: torch.Tensor) -> torch.Tensor:  # (B,H,W,C) → (B·nW, C, sh, sw)
            if pad:
                x = F.pad(x, (0, 0, left, pad_w - left, top, pad_h - top))
            x = x.view(b, nh, sh, nw, sw, c).permute(0, 1, 3, 5, 2, 4)
            return x.reshape(-1, c, sh, sw)

        def split_heads(x: torch.Tensor) -> torch.Tensor:  # (B', C, sh, sw) → (B', heads, sh·sw, hd)
            return x.reshape(-1, heads, hd, sh * sw).transpose(2, 3)

        v_win = windows(v)
        lepe = split_heads(self.get_v(v_win))
        out = F.scaled_dot_product_attention(split_heads(windows(q)), split_heads(windows(k)), split_heads(v_win))
        out = (out + lepe).transpose(2, 3).reshape(b, nh, nw, c, sh, sw)
        out = out.permute(0, 1, 4, 2, 5, 3).reshape(b, hp, wp, c)
        return out[:, top : top + h, left : left + w]


class CSWinBlock(nn.Module):
    """norm1 → qkv → (two stripe branches | one global branch) → proj → residual; norm2 → MLP → residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        split: int,
        *,
        last_stage: bool,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        if last_stage:
            self.attns = nn.ModuleList([LePEAttention(dim, num_heads, split, -1)])
        else:
            if dim % 2 or num_heads % 2:
                raise ValueError(f"dim {dim} and num_heads {num_heads} must be even (two branches)")
            self.attns = nn.ModuleList(LePEAttention(dim // 2, num_heads // 2, split, d) for d in (0, 1))
        self.proj = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B,H,W,C) → (B,H,W,C)."""
        c = x.shape[-1]
        q, k, v = self.qkv(self.norm1(x)).split(c, dim=-1)
        if len(self.attns) == 1:
            att = self.attns[0](q, k, v)
        else:
            half = c // 2
            att = torch.cat(
                [
                    self.attns[0](q[..., :half], k[..., :half], v[..., :half]),
                    self.attns[1](q[..., half:], k[..., half:], v[..., half:]),
                ],
                dim=-1,
            )
        x = x + self.drop_path(self.proj(att))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MergeBlock(nn.Module):
    """3×3 stride-2 conv + LayerNorm between stages: (B,H,W,C) → (B,⌈H/2⌉,⌈W/2⌉,C_out)."""

    def __init__(self, dim: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class _ToNHWC(nn.Module):
    """(B,C,H,W) → (B,H,W,C); index 1 of ``stage1_conv_embed`` (the official Rearrange has no weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class CSWinEncoder(Encoder):
    """CSWin backbone returning four NCHW maps at strides 4, 8, 16, 32.

    Args:
        embed_dim: channels of stage 1 (doubling per stage).
        depths: blocks per stage.
        num_heads: heads per stage (stages 1-3 split them over two branches).
        split_sizes: stripe size per stage (the last stage attends globally; its value is unused).
        mlp_ratio: MLP hidden ratio.
        drop_path: stochastic depth rate, linear over all blocks.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 144,
        depths: tuple[int, int, int, int] = (2, 4, 32, 2),
        num_heads: tuple[int, int, int, int] = (6, 12, 24, 24),
        split_sizes: tuple[int, int, int, int] = (1, 2, 12, 12),
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not len(depths) == len(num_heads) == len(split_sizes) == 4:
            raise ValueError("depths, num_heads and split_sizes need four entries (one per stage)")
        self.stage1_conv_embed = nn.Sequential(
            nn.Conv2d(3, embed_dim, 7, stride=4, padding=2), _ToNHWC(), nn.LayerNorm(embed_dim)
        )
        total = sum(depths)
        rates = [drop_path * i / max(total - 1, 1) for i in range(total)]
        dims = [embed_dim * 2**i for i in range(4)]
        start = 0
        for i in range(4):
            blocks = nn.ModuleList(
                CSWinBlock(
                    dims[i],
                    num_heads[i],
                    split_sizes[i],
                    last_stage=i == 3,
                    mlp_ratio=mlp_ratio,
                    drop_path=rates[start + j],
                )
                for j in range(depths[i])
            )
            start += depths[i]
            self.add_module(f"stage{i + 1}", blocks)
            if i < 3:
                self.add_module(f"merge{i + 1}", MergeBlock(dims[i], dims[i + 1]))
            self.add_module(f"norm{i + 1}", nn.LayerNorm(dims[i]))
        self.out_channels = tuple(dims)
        self.split_sizes = tuple(split_sizes)
        self.grad_checkpointing = False
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B,3,H,W) normalised → four maps (B,C_i,h_i,w_i): h_1 = ⌊(H−3)/4⌋+1 (the official stem), then
        h_{i+1} = ⌈h_i/2⌉; for H a multiple of 32 that is H/4, H/8, H/16, H/32."""
        x = self.stage1_conv_embed(x)  # (B,H/4,W/4,C) NHWC
        outs = []
        for i in range(1, 5):
            if i > 1:
                x = getattr(self, f"merge{i - 1}")(x)
            for block in getattr(self, f"stage{i}"):
                if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                    x = checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            outs.append(getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous())
        return outs

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {n for n, p in self.named_parameters() if p.dim() == 1}

    family = "cswin"

    def weights_state(self, state: dict, wf) -> tuple[dict, tuple[str, ...], str]:  # noqa: ANN001
        """Official CSWin releases (classification or segmentation) and our files → ours."""
        check_cswin_split(wf, self)
        absent_ok: tuple[str, ...] = ()
        if wf.format != "stcl-model":
            classification = any(k.startswith("head.") for k in state) or not any(k.startswith("norm4.") for k in state)
            state = convert_cswin_checkpoint(state)
            if classification:
                absent_ok = tuple(f"norm{i}.*" for i in range(1, 5))
        return state, absent_ok, ""


def convert_cswin_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official CSWin state dict (unwrapped: `stcl.models.files.unwrap_state`) → `CSWinEncoder` keys.

    Strips a ``backbone.`` prefix and drops the classifier (``head.*``) and its final ``norm.*``; the module
    names are otherwise identical.
    """
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("backbone.")
        if key.startswith(("head.", "norm.")):
            continue
        out[key] = value
    return out


# name → (embed_dim, depths, num_heads, split_sizes); "large"/"base" as the official 384 models (split 12),
# "large_224" and "tiny" as the 224 ones (split 7).
CSWIN_VARIANTS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "large": (144, (2, 4, 32, 2), (6, 12, 24, 24), (1, 2, 12, 12)),
    "large_224": (144, (2, 4, 32, 2), (6, 12, 24, 24), (1, 2, 7, 7)),
    "base": (96, (2, 4, 32, 2), (4, 8, 16, 32), (1, 2, 12, 12)),
    "tiny": (64, (1, 2, 21, 1), (2, 4, 8, 16), (1, 2, 7, 7)),
    "mini": (32, (1, 1, 2, 1), (2, 2, 4, 4), (1, 2, 2, 2)),  # CPU tests
}


def build_cswin(variant: str, *, drop_path: float = 0.0, device: str | torch.device | None = None) -> CSWinEncoder:
    """A `CSWinEncoder` of the named variant (see `CSWIN_VARIANTS`); ``device="meta"`` skips allocation."""
    if variant not in CSWIN_VARIANTS:
        raise ValueError(f"unknown CSWin variant {variant!r}; valid: {', '.join(CSWIN_VARIANTS)}")
    embed, depths, heads, splits = CSWIN_VARIANTS[variant]
    kwargs = dict(embed_dim=embed, depths=depths, num_heads=heads, split_sizes=splits, drop_path=drop_path)
    if device is not None:
        with torch.device(device):
            return CSWinEncoder(**kwargs)
    return CSWinEncoder(**kwargs)


def build(request: BuildRequest) -> CSWinEncoder:
    """`build_cswin` for the family table (`stcl.families`); CSWin is not in timm's hub, and ``out_indices``
    (ViTs only) is refused by params validation."""
    return build_cswin(request.variant, drop_path=request.drop_path, device=request.device)


def file_format(family: str, keys: Sequence[str]) -> str | None:
    """``cswin-official`` when ``keys`` are a CSWin backbone's (``stage1_conv_embed``), else None."""
    return "cswin-official" if any(k.startswith("stage1_conv_embed") for k in keys) else None


def _split_from_meta(wf) -> int | None:  # noqa: ANN001 - a stcl.models.files.WeightsFile
    """Stage-3 stripe size recorded in a CSWin file: ``arch``/``args`` entries, else the file name."""
    import re

    texts = [str(wf.meta.get("arch", "")), str(wf.meta.get("args", "")), wf.path.name]
    for text in texts:
        m = re.search(r"(?<!\d)(224|384)(?!\d)", text)
        if m:
            return 7 if m.group(1) == "224" else 12
    return None


def check_cswin_split(wf, encoder: CSWinEncoder) -> None:  # noqa: ANN001 - a stcl.models.files.WeightsFile
    """Refuse a CSWin file whose pretraining split (7 at 224 px, 12 at 384) is not the configured one.

    A model file of this project records its backbone name instead; files that record neither pass.
    """
    if wf.format == "stcl-model":
        return
    split = _split_from_meta(wf)
    if split is not None and split != encoder.split_sizes[2]:
        fix = "cswin_large_224" if split == 7 else "cswin_large"
        raise ValueError(
            f"{wf.path}: a CSWin checkpoint trained with stripe size {split} (stage 3); the configured "
            f"backbone uses {encoder.split_sizes[2]} (for a CSWin-L file choose model.backbone: {fix})"
        )
