"""Whole mmseg EncoderDecoder state dicts → ours, and back (the round trip the mmseg equivalence tests use).

Segmentor keys are mmseg's EncoderDecoder ones (``backbone.``, ``decode_head.``, ``auxiliary_head.``); the
heads keep their names, and the backbone keys are mapped by their family's module (`stcl.models.swin`,
`stcl.models.resnet`; CSWin keeps the official names). Loading a file into a model goes through
`stcl.models.loading`, which asks the encoder (``Encoder.weights_state``) instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from stcl.models.files import backbone_format, unwrap_state
from stcl.models.resnet import mmseg_resnet_to_timm, timm_resnet_to_mmseg
from stcl.models.swin import check_swin_index, mmseg_swin_to_timm, timm_swin_to_mmseg

__all__ = ["convert_mmseg_checkpoint", "to_mmseg_checkpoint"]


def convert_mmseg_checkpoint(
    state_dict: Mapping[str, torch.Tensor], *, window: int | None = None, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """An mmseg EncoderDecoder state dict (``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``) → ours.

    Heads keep their names (ours are mmseg's); the backbone is converted by family: Swin (``stages.N.
    blocks``; with ``window`` its stored position indices are checked, see `check_swin_index`), ResNetV1c
    and ResNeSt (``stem.N``); CSWin backbones and keys already in our format pass through.
    """
    state, _ = unwrap_state(state_dict, source)
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    rest = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    if any(k.startswith("model.") for k in backbone):
        family = "ours"
    else:
        found = backbone_format(list(backbone))
        family = found[0] if found else None
    if family in ("ours", "cswin"):
        converted = backbone  # already ours, or CSWin (whose names we keep)
    elif family == "swin":
        if window is not None:
            check_swin_index(backbone, window, source)
        converted = mmseg_swin_to_timm(backbone)
    elif family in ("resnet", "resnest"):
        converted = mmseg_resnet_to_timm(backbone)
    else:
        raise ValueError(
            f"{source}: unrecognised backbone keys (expected mmseg Swin, ResNetV1c, ResNeSt or CSWin): "
            f"{', '.join(list(backbone)[:3])}"
        )
    return {**{f"backbone.{k}": v for k, v in converted.items()}, **rest}


def to_mmseg_checkpoint(state: Mapping[str, torch.Tensor], *, window: int | None = None) -> dict[str, torch.Tensor]:
    """Our segmentor state dict → mmseg's EncoderDecoder layout (Swin or ResNet family; no ``projection``)."""
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    rest = {k: v for k, v in state.items() if not k.startswith(("backbone.", "projection."))}
    if any(".blocks." in k for k in backbone):
        converted = timm_swin_to_mmseg(backbone, window)
    elif any(k.startswith("model.layer1.") for k in backbone):
        converted = timm_resnet_to_mmseg(backbone)
    else:
        raise ValueError("to_mmseg_checkpoint: only Swin and ResNet/ResNeSt backbones have an mmseg layout")
    return {**{f"backbone.{k}": v for k, v in converted.items()}, **rest}
