"""The Swin family: timm's `SwinTransformer` computed as the official Swin, and its weights files.

`SwinEncoder` wraps timm's `SwinTransformer` and computes what the official Swin and mmseg's `SwinTransformer`
compute at any input size: every stage keeps the configured window (timm's ``always_partition``; by default
timm would shrink a window larger than the 224-pixel feature map and drop its shift), every odd block is
shifted by half a window, and a shifted block pads its map to whole windows *before* the cyclic roll, with the
mask built on the padded map (`PadThenRollBlock`; timm rolls then pads, which differs whenever a stage's size
is not a multiple of the window). It adds one LayerNorm per output stage (``norm0`` … ``norm3``), as mmseg's
Swin does; timm's NHWC stage outputs are normalised, then permuted to NCHW. Key names are timm's.

Files (`file_format`, `SwinEncoder.weights_state`): mmseg model-zoo checkpoints, the Microsoft release
(``swin-official``: ``swin_large_patch4_window12_384_22k.pth``, ``{"model": ...}`` with PatchMerging at the end
of each stage and ``relative_position_index`` buffers) and timm's weights (``swin-timm``:
``swin_large_patch4_window12_384.ms_in22k``, PatchMerging at the start of the next stage, ``head.fc``). The layouts differ in three ways: where PatchMerging
sits (official and mmseg: end of stage N; timm: start of stage N+1), the order of PatchMerging's 4·C input
channels (mmseg's nn.Unfold order (c, kh, kw) against the official/timm order (kw, kh, c)), and module names
(mmseg's ``attn.w_msa``, ``ffn.layers``). ``relative_position_index`` buffers stored by the official and mmseg
files are checked against the index of the configured window (`check_swin_index`), never silently dropped;
``attn_mask`` buffers are recomputed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import PatchMerging, SwinTransformerBlock, window_partition, window_reverse
from torch import nn

from stcl.models.dynamic_shapes import ceil_to, exporting, swin_shift_mask
from stcl.models.encoder_base import BuildRequest, Encoder

__all__ = [
    "SwinEncoder",
    "PadThenRollBlock",
    "SWIN_SIZES",
    "build",
    "file_format",
    "check_swin_index",
    "mmseg_swin_to_timm",
    "timm_swin_to_mmseg",
    "official_swin_to_timm",
    "timm_swin_release_to_ours",
]


class PadThenRollBlock(SwinTransformerBlock):
    """timm's Swin block with the attention step in the official / mmseg order: pad, roll, attend, roll
    back, crop. Same parameters and keys as `SwinTransformerBlock` (instances are re-classed in place).

    timm rolls the unpadded map and pads afterwards, so the padding lands inside the cyclic shift; the
    official code pads the map to whole windows first and builds the shift mask on the padded map. Sizes
    and the mask are computed in a form the ONNX export keeps symbolic (`stcl.models.dynamic_shapes`).
    """

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B,H,W,C) → (B,H,W,C)."""
        _, h, w, c = x.shape
        wh, ww = self.window_size
        hp, wp = ceil_to(h, wh), ceil_to(w, ww)
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        shifted = any(self.shift_size)
        if shifted:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        # (nW, wh·ww, wh·ww) on the padded map: timm's get_attn_mask, value for value
        mask = swin_shift_mask(hp, wp, self.window_size, self.shift_size, x) if shifted else None
        windows = window_partition(x, self.window_size).view(-1, self.window_area, c)
        windows = self.attn(windows, mask=mask).view(-1, wh, ww, c)
        x = window_reverse(windows, self.window_size, hp, wp)
        if shifted:
            x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
        return x[:, :h, :w, :].contiguous()


class PadMerging(PatchMerging):
    """timm's `PatchMerging` (pad odd sizes by one row/column, merge 2×2) with the padded size written as
    ``ceil_to(H, 2)``, a form the ONNX export keeps symbolic; the same numbers (instances re-classed in place)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B,H,W,C) → (B,⌈H/2⌉,⌈W/2⌉,C_out)."""
        b, h, w, c = x.shape
        hp, wp = ceil_to(h, 2), ceil_to(w, 2)
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        x = x.reshape(b, hp // 2, 2, wp // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinEncoder(Encoder):
    """timm `SwinTransformer` computed as the official Swin, with a LayerNorm per output stage (``norm0`` …).

    Any input size works: each block pads its map to whole windows of the configured size (``window_size``
    at every stage, whatever the input), odd blocks shift by ``window_size // 2``, masks are built per size.

    Args:
        embed_dim, depths, num_heads, window_size: architecture (timm arguments).
        drop_path: stochastic depth rate (linearly increasing over blocks).
        hub_name: timm name used only when ``pretrained_from_hub`` is set.
        pretrained_from_hub: let timm fetch its pretrained weights (network access; opt-in).
        device: build on this device ("meta" to count parameters without allocating them).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depths: tuple[int, ...],
        num_heads: tuple[int, ...],
        window_size: int,
        drop_path: float = 0.0,
        hub_name: str | None = None,
        pretrained_from_hub: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        import timm
        from timm.models.swin_transformer import SwinTransformer

        kwargs = dict(
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            num_classes=0,
            drop_path_rate=drop_path,
            strict_img_size=False,  # also makes timm build the shift masks per input size
            always_partition=True,  # the configured window at every stage, shift on every odd block
        )
        if pretrained_from_hub:
            if hub_name is None:
                raise ValueError("SwinEncoder: pretrained_from_hub needs hub_name (the timm name of its weights)")
            self.model = timm.create_model(hub_name, pretrained=True, **kwargs)
        else:
            self.model = SwinTransformer(**kwargs, device=device)
        self.model.prune_intermediate_layers(len(depths), prune_norm=True, prune_head=True)
        self.window_size = window_size
        for layer in self.model.layers:
            for block in layer.blocks:
                block.__class__ = PadThenRollBlock
            if isinstance(layer.downsample, PatchMerging):
                layer.downsample.__class__ = PadMerging
        self.out_channels = tuple(int(embed_dim * 2**i) for i in range(len(depths)))
        for i, ch in enumerate(self.out_channels):
            self.add_module(f"norm{i}", nn.LayerNorm(ch, device=device))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B,3,H,W) normalised → four maps (B,C_i,⌈H/s_i⌉,⌈W/s_i⌉)."""
        ph, pw = self.model.patch_embed.patch_size
        pad_h, pad_w = ceil_to(x.shape[2], ph) - x.shape[2], ceil_to(x.shape[3], pw) - x.shape[3]
        if pad_h or pad_w or exporting():  # bottom/right zero padding, as mmseg's AdaptivePadding("corner")
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h))
        x = self.model.patch_embed(x)  # (B, H/4, W/4, C) NHWC
        outs = []
        for i, layer in enumerate(self.model.layers):
            x = layer(x)
            outs.append(getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous())
        return outs

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    family = "swin"

    def weights_state(self, state: dict, wf) -> tuple[dict, tuple[str, ...], str]:  # noqa: ANN001
        """mmseg, official Swin and timm Swin layouts → ours; stored position indices checked, not dropped."""
        source, window = str(wf.path), self.window_size
        hint = ""
        if wf.window is not None and wf.window != window:
            hint = f" (the file's Swin window is {wf.window}, the configured one {window})"
        absent_ok: tuple[str, ...] = ()
        if wf.format == "mmseg":
            if wf.window == window:
                check_swin_index(state, window, source)
            state = mmseg_swin_to_timm(state)
        elif wf.format == "swin-official":
            if wf.window == window:
                check_swin_index(state, window, source)
            state = official_swin_to_timm(state)
            absent_ok = tuple(f"norm{i}.*" for i in range(4))
        elif wf.format == "swin-timm":
            state = timm_swin_release_to_ours(state)
            absent_ok = tuple(f"norm{i}.*" for i in range(4))
        return state, absent_ok, hint

    def no_weight_decay(self) -> set[str]:
        names = {f"model.{n}" for n in self.model.no_weight_decay()}
        names |= {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n or "norm" in n}
        return names


def _unfold_to_timm_order(x: torch.Tensor) -> torch.Tensor:
    """Last dim 4·C from mmseg's nn.Unfold order (c, kh, kw) to timm's (kw, kh, c) patch-merging order."""
    lead, n = x.shape[:-1], x.shape[-1]
    x = x.reshape(*lead, n // 4, 4).transpose(-1, -2)  # (…, 4 [kh*2+kw], C)
    return x[..., [0, 2, 1, 3], :].reshape(*lead, n)


def _timm_to_unfold_order(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `_unfold_to_timm_order`."""
    lead, n = x.shape[:-1], x.shape[-1]
    x = x.reshape(*lead, 4, n // 4)[..., [0, 2, 1, 3], :]
    return x.transpose(-1, -2).reshape(*lead, n)


def check_swin_index(state: Mapping[str, torch.Tensor], window: int, source: str) -> None:
    """Every stored ``relative_position_index`` must equal the index of a ``window``×``window`` window.

    Raises ValueError naming ``source``, the first key that differs and the file's window (from its shape).
    """
    from timm.models.swin_transformer import get_relative_position_index

    want = get_relative_position_index(window, window)
    for key, value in state.items():
        if key.endswith("relative_position_index") and not torch.equal(value.long(), want):
            side = round(value.shape[0] ** 0.5) if value.dim() == 2 else -1
            if side == window:
                raise ValueError(f"{source}: {key} is not the relative-position index of a {window}×{window} window")
            raise ValueError(
                f"{source}: {key} is the index of a {side}×{side} window; the configured Swin uses "
                f"window {window} (pick the backbone that matches the file)"
            )


_SWIN_BLOCK_RENAMES = (
    ("attn.w_msa.", "attn."),
    ("ffn.layers.0.0.", "mlp.fc1."),
    ("ffn.layers.1.", "mlp.fc2."),
)


def mmseg_swin_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg SwinTransformer backbone keys (without ``backbone.``) → our SwinEncoder keys.

    ``patch_embed.projection`` → ``model.patch_embed.proj``; ``stages.N.blocks.M.*`` → ``model.layers.N.
    blocks.M.*`` (``attn.w_msa`` → ``attn``, ``ffn.layers.0.0`` → ``mlp.fc1``, ``ffn.layers.1`` →
    ``mlp.fc2``); mmseg's PatchMerging ends stage N, timm's starts layer N+1, and its reduction/norm input
    channels are reordered from nn.Unfold's order to timm's; ``normN`` stay ``normN``. The
    ``relative_position_index`` buffers are dropped here: check them first with `check_swin_index`.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(("relative_position_index", "attn_mask")):
            continue
        if re.fullmatch(r"norm\d+\.(weight|bias)", key):
            out[key] = value
            continue
        new = key.replace("patch_embed.projection.", "patch_embed.proj.")
        m = re.match(r"stages\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$", new)
        if m:
            stage, part, kind = int(m.group(1)), m.group(2), m.group(3)
            new = f"layers.{stage + 1}.downsample.{part}.{kind}"
            value = _unfold_to_timm_order(value)  # reduction (2C,4C) and norm (4C,): input channels
        else:
            new = re.sub(r"^stages\.(\d+)\.blocks\.", r"layers.\1.blocks.", new)
            for old, rep in _SWIN_BLOCK_RENAMES:
                new = new.replace(old, rep)
        out[f"model.{new}"] = value
    return out


def timm_swin_to_mmseg(state: Mapping[str, torch.Tensor], window: int | None = None) -> dict[str, torch.Tensor]:
    """Inverse of `mmseg_swin_to_timm`; with ``window``, the ``relative_position_index`` buffers mmseg stores
    are added (so that the result loads strictly into mmseg's SwinTransformer)."""
    from timm.models.swin_transformer import get_relative_position_index

    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if re.fullmatch(r"norm\d+\.(weight|bias)", key):
            out[key] = value
            continue
        if not key.startswith("model."):
            raise ValueError(f"unexpected Swin encoder key {key!r}")
        new = key[len("model.") :].replace("patch_embed.proj.", "patch_embed.projection.")
        m = re.match(r"layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$", new)
        if m:
            new = f"stages.{int(m.group(1)) - 1}.downsample.{m.group(2)}.{m.group(3)}"
            value = _timm_to_unfold_order(value)
        else:
            new = re.sub(r"^layers\.(\d+)\.blocks\.", r"stages.\1.blocks.", new)
            for old, rep in _SWIN_BLOCK_RENAMES:
                new = new.replace(rep, old)
            if window is not None and new.endswith("relative_position_bias_table"):
                out[new.replace("bias_table", "index")] = get_relative_position_index(window, window)
        out[new] = value
    return out


def official_swin_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Microsoft's Swin release (``{"model": ...}``) → our SwinEncoder keys (classifier dropped).

    ``layers.N.downsample`` → ``model.layers.N+1.downsample`` (same channel order as timm); the ImageNet
    ``head`` and final ``norm`` are dropped; ``relative_position_index`` / ``attn_mask`` buffers are dropped
    (check the index first with `check_swin_index`).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(("relative_position_index", "attn_mask")) or key.startswith(("head.", "norm.")):
            continue
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)$", key)
        if m:
            key = f"layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"
        out[f"model.{key}"] = value
    return out


def timm_swin_release_to_ours(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's Swin weights → our SwinEncoder keys: ``model.`` prefix, ``head.*`` and final ``norm.*`` dropped."""
    return {
        f"model.{k}": v
        for k, v in state.items()
        if not k.startswith(("head.", "norm.")) and not k.endswith(("relative_position_index", "attn_mask"))
    }


# backbone → (embed_dim, depths, num_heads, window, timm hub name or None)
SWIN_SIZES: dict[str, tuple[int, tuple[int, ...], tuple[int, ...], int, str | None]] = {
    # paper (Swin-L, IN-22K, 384): 192 embed, depths (2,2,18,2), heads (6,12,24,48), window 12
    "swin_large_patch4_window12_384": (192, (2, 2, 18, 2), (6, 12, 24, 48), 12, "swin_large_patch4_window12_384"),
    "swin_base_patch4_window12_384": (128, (2, 2, 18, 2), (4, 8, 16, 32), 12, "swin_base_patch4_window12_384"),
    "swin_tiny_patch4_window7_224": (96, (2, 2, 6, 2), (3, 6, 12, 24), 7, "swin_tiny_patch4_window7_224"),
    # reduced Swin for CPU runs (random init)
    "swin_mini": (32, (1, 1, 2, 1), (1, 2, 4, 8), 7, None),
}


def build(request: BuildRequest) -> SwinEncoder:
    """The `SwinEncoder` of ``SWIN_SIZES[request.variant]`` (``out_indices``: ViTs only, refused by params)."""
    embed_dim, depths, heads, window, hub = SWIN_SIZES[request.variant]
    return SwinEncoder(
        embed_dim=embed_dim,
        depths=depths,
        num_heads=heads,
        window_size=window,
        drop_path=request.drop_path,
        hub_name=hub,
        pretrained_from_hub=request.pretrained_from_hub,
        device=request.device,
    )


def file_format(family: str, keys: Sequence[str]) -> str | None:
    """``swin-official`` or ``swin-timm`` when ``keys`` are a Swin backbone's (``stages.N.blocks`` of mmseg or
    ``layers.N.blocks``), else None."""
    if not any(".blocks." in k and k.split(".")[0] in ("stages", "layers") for k in keys):
        return None
    # PatchMerging ends stage 0 in the official layout and starts stage 1 in timm's; without any
    # PatchMerging (one stage), stored index buffers mark the official release.
    if any(k.startswith("layers.0.downsample.") for k in keys):
        official = True
    elif any(k.startswith("layers.1.downsample.") for k in keys):
        official = False
    else:
        official = any(k.endswith("relative_position_index") for k in keys)
    return "swin-official" if official else "swin-timm"
