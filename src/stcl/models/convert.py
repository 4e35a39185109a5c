"""Key conversion from every public weights layout to ours, and back to mmseg's (for the round trip).

Our encoder keys: Swin is timm's `SwinTransformer` under ``model.`` plus ``norm0`` … ``norm3``; ResNet /
ResNeSt are timm's ``resnet50c`` / ``resnest101e`` under ``model.``; CSWin keeps the official names.
Segmentor keys are mmseg's EncoderDecoder ones (``backbone.``, ``decode_head.``, ``auxiliary_head.``).

Swin layouts differ in three ways: where PatchMerging sits (official and mmseg: end of stage N; timm: start
of stage N+1), the order of PatchMerging's 4·C input channels (mmseg's nn.Unfold order (c, kh, kw) against
the official/timm order (kw, kh, c)), and module names (mmseg's ``attn.w_msa``, ``ffn.layers``).
``relative_position_index`` buffers stored by the official and mmseg files are checked against the index of
the configured window (`check_swin_index`), never silently dropped; ``attn_mask`` buffers are recomputed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

__all__ = [
    "mmseg_swin_to_timm",
    "timm_swin_to_mmseg",
    "official_swin_to_timm",
    "timm_swin_release_to_ours",
    "mmseg_resnet_to_timm",
    "timm_resnet_to_mmseg",
    "convert_mmseg_checkpoint",
    "to_mmseg_checkpoint",
    "check_swin_index",
]


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


def mmseg_resnet_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg ResNetV1c / ResNeSt keys → timm resnet*c / resnest*e keys under ``model.``.

    The deep stem ``stem.{0,3,6}`` (convs) and ``stem.{1,4}`` (BNs) becomes ``conv1.N``, ``stem.7`` becomes
    ``bn1``; every other name is shared (timm's ResNeSt split attention is ``conv``, ``bn0``, ``fc1``,
    ``bn1``, ``fc2`` as mmseg's; its average-pool downsample is ``downsample.{1,2}`` in both).
    """
    out = {}
    for key, value in state.items():
        new = re.sub(r"^stem\.([013456])\.", r"conv1.\1.", key)
        new = re.sub(r"^stem\.7\.", "bn1.", new)
        out[f"model.{new}"] = value
    return out


def timm_resnet_to_mmseg(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `mmseg_resnet_to_timm`."""
    out = {}
    for key, value in state.items():
        if not key.startswith("model."):
            raise ValueError(f"unexpected ResNet encoder key {key!r}")
        new = re.sub(r"^conv1\.(\d)\.", r"stem.\1.", key[len("model.") :])
        new = re.sub(r"^bn1\.", "stem.7.", new)
        out[new] = value
    return out


def convert_mmseg_checkpoint(
    state_dict: Mapping[str, torch.Tensor], *, window: int | None = None, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """An mmseg EncoderDecoder state dict (``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``) → ours.

    Heads keep their names (ours are mmseg's); the backbone is converted by family: Swin (``stages.N.
    blocks``; with ``window`` its stored position indices are checked, see `check_swin_index`), ResNetV1c
    and ResNeSt (``stem.N``); CSWin backbones and keys already in our format pass through.
    """
    state = dict(state_dict["state_dict"]) if isinstance(state_dict.get("state_dict"), Mapping) else dict(state_dict)
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    rest = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    if any(k.startswith(("model.", "stage1_conv_embed.")) for k in backbone):
        converted = backbone  # already ours, or CSWin (whose names we keep)
    elif any(k.startswith("stages.") and ".blocks." in k for k in backbone):
        if window is not None:
            check_swin_index(backbone, window, source)
        converted = mmseg_swin_to_timm(backbone)
    elif any(k.startswith("stem.") for k in backbone) or any(k.startswith("layer1.") for k in backbone):
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
