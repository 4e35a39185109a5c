"""Image encoders: timm backbones that return four NCHW feature maps at strides 4, 8, 16 and 32.

Users pick an encoder by name (``model.backbone`` in params.yaml) from `ENCODERS`, the one name→factory
table of the project; an unknown name raises a ValueError that lists the valid ones.

* CNNs (ResNet, ResNeSt) wrap the full timm model and read its stages through timm's
  ``forward_intermediates``, so the state-dict keys are timm's own (``model.layer1.0.conv1.weight``) and a
  timm checkpoint loads unchanged. ``resnet50`` is timm's ``resnet50c``: the deep stem (three 3×3 convs,
  32-32-64) that mmseg calls ResNetV1c. ResNeSt needs at least two samples per BatchNorm in train mode.
* Swin wraps timm's `SwinTransformer` and computes what the official Swin and mmseg's `SwinTransformer`
  compute at any input size: every stage keeps the configured window (timm's ``always_partition``; by
  default timm would shrink a window larger than the 224-pixel feature map and drop its shift), every odd
  block is shifted by half a window, and a shifted block pads its map to whole windows *before* the cyclic
  roll, with the mask built on the padded map (`PadThenRollBlock`; timm rolls then pads, which differs
  whenever a stage's size is not a multiple of the window). It adds one LayerNorm per output stage
  (``norm0`` … ``norm3``), as mmseg's Swin does; timm's NHWC stage outputs are normalised, then permuted
  to NCHW. Key names are timm's.
* CSWin lives in `stcl.models.cswin` (not in timm).
* DINOv2 / DINOv3 ViTs (timm's ViT / Eva + a simple feature pyramid) live in `stcl.models.dino`.

Pretrained weights come from a local file named in params (any format `stcl.models.files` detects: the
official Swin / CSWin releases, timm weights, mmseg model-zoo checkpoints), loaded strictly by
`stcl.models.loading`, or, only with ``pretrained_from_hub``, from timm's hub loading. Nothing downloads
by default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import PatchMerging, SwinTransformerBlock, window_partition, window_reverse
from torch import nn

from stcl.models.dynamic_shapes import ceil_to, exporting, swin_shift_mask
from stcl.models.encoder_base import Encoder
from stcl.models.loading import LoadReport
from stcl.params import hub_fault

__all__ = [
    "Encoder",
    "TimmCnnEncoder",
    "SwinEncoder",
    "ENCODERS",
    "LoadReport",
    "build_encoder",
    "encoder_names",
    "PadThenRollBlock",
]

log = logging.getLogger(__name__)


class TimmCnnEncoder(Encoder):
    """A timm CNN (ResNet family) read at its four residual stages.

    Args:
        name: timm model name (``resnet18``, ``resnet50c``, ``resnest101e``, …).
        drop_path: stochastic depth rate.
        pretrained_from_hub: let timm fetch its pretrained weights (network access; opt-in).
    """

    def __init__(self, name: str, *, drop_path: float = 0.0, pretrained_from_hub: bool = False) -> None:
        super().__init__()
        import timm

        self.timm_name = name
        self.model = timm.create_model(name, pretrained=pretrained_from_hub, num_classes=0, drop_path_rate=drop_path)
        infos = self.model.feature_info
        # Stage indices whose reduction is 4, 8, 16, 32 (index 0 is the stride-2 stem).
        self._indices = [i for i, info in enumerate(infos) if info["reduction"] in (4, 8, 16, 32)]
        if len(self._indices) != 4:
            raise ValueError(f"timm model {name!r} does not expose stages at strides 4/8/16/32: {infos}")
        self.model.prune_intermediate_layers(self._indices, prune_head=True)
        self.out_channels = tuple(int(infos[i]["num_chs"]) for i in self._indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B,3,H,W) normalised → four maps (B,C_i,H/s_i,W/s_i)."""
        return list(self.model.forward_intermediates(x, indices=self._indices, intermediates_only=True))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    @property
    def family(self) -> str:  # type: ignore[override]
        return "resnest" if "resnest" in self.timm_name else "resnet"

    def weights_state(self, state: dict, wf) -> tuple[dict, tuple[str, ...], str]:  # noqa: ANN001
        """mmseg (``backbone.`` stripped), mmcv deep-stem (``stem.N``) and timm ImageNet layouts → ours."""
        from stcl.models import convert

        if wf.format == "mmseg":
            state = convert.mmseg_resnet_to_timm(state)
        elif wf.format == "resnet-timm" and any(k.startswith("stem.") for k in state):
            # mmcv / mmseg ImageNet files (open-mmlab://resnet50_v1c, resnest101): deep stem named stem.N
            state = convert.mmseg_resnet_to_timm({k: v for k, v in state.items() if not k.startswith("fc.")})
        elif wf.format == "resnet-timm":
            state = {f"model.{k}": v for k, v in state.items() if not k.startswith(("fc.", "head."))}
        return state, (), ""


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
        from stcl.models import convert

        source, window = str(wf.path), self.window_size
        hint = ""
        if wf.window is not None and wf.window != window:
            hint = f" (the file's Swin window is {wf.window}, the configured one {window})"
        absent_ok: tuple[str, ...] = ()
        if wf.format == "mmseg":
            if wf.window == window:
                convert.check_swin_index(state, window, source)
            state = convert.mmseg_swin_to_timm(state)
        elif wf.format == "swin-official":
            if wf.window == window:
                convert.check_swin_index(state, window, source)
            state = convert.official_swin_to_timm(state)
            absent_ok = tuple(f"norm{i}.*" for i in range(4))
        elif wf.format == "swin-timm":
            state = convert.timm_swin_release_to_ours(state)
            absent_ok = tuple(f"norm{i}.*" for i in range(4))
        return state, absent_ok, hint

    def no_weight_decay(self) -> set[str]:
        names = {f"model.{n}" for n in self.model.no_weight_decay()}
        names |= {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n or "norm" in n}
        return names


def _swin(embed_dim: int, depths: tuple[int, ...], heads: tuple[int, ...], window: int, hub: str | None):
    def factory(drop_path: float, pretrained_from_hub: bool, device: str | torch.device | None) -> Encoder:
        return SwinEncoder(
            embed_dim=embed_dim,
            depths=depths,
            num_heads=heads,
            window_size=window,
            drop_path=drop_path,
            hub_name=hub,
            pretrained_from_hub=pretrained_from_hub,
            device=device,
        )

    return factory


def _cnn(timm_name: str):
    def factory(drop_path: float, pretrained_from_hub: bool, device: str | torch.device | None) -> Encoder:
        if device is not None and torch.device(device).type == "meta":
            with torch.device("meta"):
                return TimmCnnEncoder(timm_name, drop_path=drop_path)
        return TimmCnnEncoder(timm_name, drop_path=drop_path, pretrained_from_hub=pretrained_from_hub)

    return factory


def _cswin(variant: str):
    def factory(drop_path: float, pretrained_from_hub: bool, device: str | torch.device | None) -> Encoder:
        from stcl.models.cswin import build_cswin

        return build_cswin(variant, drop_path=drop_path, device=device)

    return factory


def _dino(variant: str):
    def factory(
        drop_path: float,
        pretrained_from_hub: bool,
        device: str | torch.device | None,
        out_indices: tuple[int, ...] | None = None,
    ) -> Encoder:
        from stcl.models.dino import build_dino

        return build_dino(variant, drop_path=drop_path, device=device, out_indices=out_indices)

    return factory


# (drop_path, pretrained_from_hub, device): only the hub families (`stcl.params.HUB_BACKBONES`) read
# pretrained_from_hub; `build_encoder` refuses it for the others before calling their factory.
EncoderFactory = Callable[[float, bool, "str | torch.device | None"], Encoder]

# The one name → factory table where users pick a backbone (params.yaml ``model.backbone``).
ENCODERS: dict[str, EncoderFactory] = {
    # paper (Swin-L, IN-22K, 384): 192 embed, depths (2,2,18,2), heads (6,12,24,48), window 12
    "swin_large_patch4_window12_384": _swin(192, (2, 2, 18, 2), (6, 12, 24, 48), 12, "swin_large_patch4_window12_384"),
    "swin_base_patch4_window12_384": _swin(128, (2, 2, 18, 2), (4, 8, 16, 32), 12, "swin_base_patch4_window12_384"),
    "swin_tiny_patch4_window7_224": _swin(96, (2, 2, 6, 2), (3, 6, 12, 24), 7, "swin_tiny_patch4_window7_224"),
    # reduced Swin for CPU runs (random init)
    "swin_mini": _swin(32, (1, 1, 2, 1), (1, 2, 4, 8), 7, None),
    # mmseg's ResNetV1c (deep stem) = timm resnet50c / resnet101c
    "resnet50": _cnn("resnet50c"),
    "resnet101": _cnn("resnet101c"),
    "resnest101e": _cnn("resnest101e"),
    "resnet18": _cnn("resnet18"),
    "cswin_large": _cswin("large"),
    "cswin_large_224": _cswin("large_224"),
    "cswin_tiny": _cswin("tiny"),
    "cswin_mini": _cswin("mini"),
    # DINOv2 / DINOv3 ViT-L + simple feature pyramid (stcl.models.dino); *_tiny: reduced, random init
    "dinov2_vitl14": _dino("dinov2_vitl14"),
    "dinov2_vitl14_reg4": _dino("dinov2_vitl14_reg4"),
    "dinov3_vitl16": _dino("dinov3_vitl16"),
    "dinov2_tiny": _dino("dinov2_tiny"),
    "dinov3_tiny": _dino("dinov3_tiny"),
}


def encoder_names() -> tuple[str, ...]:
    """Valid values of ``model.backbone``."""
    return tuple(ENCODERS)


def build_encoder(
    name: str,
    *,
    drop_path: float = 0.0,
    pretrained: str | Path | None = None,
    pretrained_from_hub: bool = False,
    grad_checkpointing: bool = False,
    device: str | torch.device | None = None,
    exclude: tuple[str, ...] = (),
    out_indices: tuple[int, ...] | None = None,
) -> Encoder:
    """Build the encoder ``name`` (see `ENCODERS`), optionally loading local pretrained weights.

    Args:
        name: a key of `ENCODERS`.
        drop_path: stochastic depth rate.
        pretrained: local weights file in any supported format, loaded strictly; never downloaded.
        pretrained_from_hub: explicit opt-in to timm's hub download (`stcl.params.HUB_BACKBONES` only).
        grad_checkpointing: recompute encoder blocks in backward (less memory, ~30% more compute).
        device: "meta" builds without allocating (parameter counting).
        exclude: patterns of parameter names (``backbone.…``) not loaded from ``pretrained``.
        out_indices: ViT encoders only (`stcl.params.VIT_DEPTHS`): the four blocks feeding the neck (default
            evenly spaced).
    """
    if name not in ENCODERS:
        raise ValueError(f"model.backbone: unknown encoder {name!r}; valid: {', '.join(ENCODERS)}")
    fault = hub_fault(name, pretrained, pretrained_from_hub)  # params validates it too (the same words)
    if fault is not None:
        raise ValueError(f"model.pretrained_from_hub: {fault}")
    vit_blocks = () if out_indices is None else (tuple(out_indices),)  # ViT backbones only: params validates it
    encoder = ENCODERS[name](drop_path, pretrained_from_hub, device, *vit_blocks)
    if pretrained is not None:
        from stcl.models.loading import load_encoder_weights

        load_encoder_weights(encoder, pretrained, exclude=exclude)
    if grad_checkpointing:
        encoder.set_grad_checkpointing(True)
    return encoder
