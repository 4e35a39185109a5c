"""Image encoders: four NCHW feature maps at strides 4, 8, 16 and 32, built by name from the family table.

Users pick an encoder by name (``model.backbone`` in params.yaml); `stcl.families.FAMILIES` lists the names,
one row per family, and the module that builds each (`stcl.models.swin`, `stcl.models.resnet`,
`stcl.models.cswin`, `stcl.models.dino`). An unknown name raises a ValueError that lists the valid ones.

Pretrained weights come from a local file named in params (any format `stcl.models.files` detects: the
official Swin / CSWin / DINO releases, timm weights, mmseg model-zoo checkpoints), loaded strictly by
`stcl.models.loading`, or, only with ``pretrained_from_hub``, from timm's hub loading. Nothing downloads
by default.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stcl.families import BACKBONES, family_module, family_of
from stcl.models.encoder_base import BuildRequest, Encoder

__all__ = ["Encoder", "build_encoder", "encoder_names"]


def encoder_names() -> tuple[str, ...]:
    """Valid values of ``model.backbone``."""
    return BACKBONES


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
    """Build the encoder ``name`` (see `stcl.families`), optionally loading local pretrained weights.

    Args:
        name: a ``model.backbone`` name.
        drop_path: stochastic depth rate.
        pretrained: local weights file in any supported format, loaded strictly; never downloaded.
        pretrained_from_hub: explicit opt-in to timm's hub download (`stcl.params.HUB_BACKBONES` only; the others
            ignore it: params refuses it for them, and together with ``pretrained``).
        grad_checkpointing: recompute encoder blocks in backward (less memory, ~30% more compute).
        device: "meta" builds without allocating (parameter counting).
        exclude: patterns of parameter names (``backbone.…``) not loaded from ``pretrained``.
        out_indices: ViT encoders only (`stcl.params.VIT_DEPTHS`): the four blocks feeding the neck (default
            evenly spaced).
    """
    family = family_of(name)
    # `stcl.params.ModelParams` validates the sources (one of pretrained, pretrained_from_hub) and out_indices.
    request = BuildRequest(family.backbones[name], drop_path, pretrained_from_hub, device, out_indices)
    encoder = family_module(family).build(request)
    if pretrained is not None:
        from stcl.models.loading import load_encoder_weights

        load_encoder_weights(encoder, pretrained, exclude=exclude)
    if grad_checkpointing:
        encoder.set_grad_checkpointing(True)
    return encoder
