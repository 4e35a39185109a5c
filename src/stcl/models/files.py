"""Reading weights files safely, and telling which public format a file is in.

`read_weights_file` opens ``.pth``/``.pt``/``.bin`` files with ``torch.load(weights_only=True)`` (never the
unsafe unpickler) and ``.safetensors`` files with safetensors; any failure becomes one line naming the file
and what is wrong with it (missing, empty, truncated, not a torch file, pickled code refused).

`detect_format` names the layout of a loaded file:

=================  ===========================================================================================
``stcl-model``     a model file of this project (`stcl.models.checkpoints`)
``mmseg``          an mmsegmentation model-zoo checkpoint: ``{"state_dict": {backbone.*, decode_head.*, ...},
                   "meta": ...}`` (Swin, ResNetV1c, ResNeSt backbones)
``swin-official``  the Microsoft Swin release (``swin_large_patch4_window12_384_22k.pth``): ``{"model": ...}``
                   with PatchMerging at the end of each stage and ``relative_position_index`` buffers
``swin-timm``      timm's Swin weights (``swin_large_patch4_window12_384.ms_in22k``): PatchMerging at the
                   start of the next stage, ``head.fc``
``cswin-official`` the microsoft/CSWin-Transformer release (``state_dict_ema`` / ``state_dict`` / ``model``)
``resnet-timm``    a ResNet/ResNeSt ImageNet state dict: timm's (``conv1``, ``layer1`` … ``layer4``, ``fc``) or
                   mmcv's (deep stem ``stem.N``, e.g. ``resnet50_v1c-2cccc1ad.pth``)
``dinov2-official`` facebookresearch/dinov2 releases (``mask_token``, ``register_tokens`` in reg4, ``ls1.gamma``)
``dinov2-timm``    timm's DINOv2 weights (``reg_token``, no ``mask_token``)
``dinov3-official`` facebookresearch/dinov3 releases (``storage_tokens``, ``rope_embed.periods``, ``qkv.bias_mask``)
``dinov3-timm``    timm's DINOv3 (Eva) weights (``gamma_1``, ``q_bias``/``v_bias``)
``dinov3-hf``      Hugging Face transformers' DINOv3 (``embeddings.*``, ``layer.N.attention.q_proj``)
=================  ===========================================================================================

The DINO layouts are mapped by `stcl.models.dino_files`.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["WeightsFile", "read_weights_file", "tensor_state", "unwrap_state", "detect_format", "open_weights"]

# Unwrapping order of the official CSWin segmentation loader (mmcv_custom/checkpoint.py): a file holding both
# ``state_dict`` and ``state_dict_ema`` gives ``state_dict``.
_WRAPPERS = ("state_dict", "state_dict_ema", "model", "module")


def read_weights_file(path: str | Path, what: str = "weights file") -> Any:
    """Load ``path`` without executing pickled code; errors are one ValueError line naming the file.

    Returns whatever the file holds (a dict of tensors, or a dict wrapping one).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: {what} is a directory; name the file itself")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: {what} is empty (0 bytes)")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, what)
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: {what} is truncated or damaged ({size} bytes; its zip index is missing)")
    elif not head.startswith(b"\x80"):  # neither torch's zip format nor a legacy pickle
        if len(head) == 8 and int.from_bytes(head, "little") < size and _looks_like_safetensors(path):
            return _read_safetensors(path, what)
        raise ValueError(f"{path}: {what} is not a torch checkpoint (no zip or pickle header)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure becomes one line about the file
        raise ValueError(f"{path}: {what} {_reason(err)}") from None


def _reason(err: Exception) -> str:
    text = str(err)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return (
            f"holds pickled Python objects ({m.group(1)}), which are refused because loading them runs code "
            "(Unsupported global); if the file is a trusted mmseg/mmengine checkpoint, keep only its weights: "
            "torch.save({'state_dict': ckpt['state_dict']}, new_path)"
        )
    if "Weights only load failed" in text or "UnpicklingError" in type(err).__name__:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln), "")
        return f"holds pickled data that is not plain tensors and containers ({first[:120]})"
    if isinstance(err, (EOFError, RuntimeError)) or "failed reading" in text or "central directory" in text:
        return "is truncated or damaged (torch could not read its records)"
    return f"is not a readable torch checkpoint ({type(err).__name__})"


def _looks_like_safetensors(path: Path) -> bool:
    with path.open("rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        return fh.read(1) == b"{" and n > 1


def _read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"{path}: {what} is not a readable safetensors file ({str(err).splitlines()[0][:120]})"
        ) from None


@dataclass
class WeightsFile:
    """A weights file, unwrapped: its format (see module doc), the tensors, and facts read from it.

    ``backbone``: the encoder family its backbone keys belong to (``swin``, ``cswin``, ``resnet``,
    ``resnest``), or None. ``window``: Swin window size from its position tables; ``heads``: True when it
    holds a decode head; ``meta``: the non-tensor entries of the file (``meta``, ``arch``, ``format``…).
    """

    path: Path
    format: str
    state: dict[str, torch.Tensor]
    backbone: str | None
    window: int | None
    heads: bool
    meta: dict[str, Any]
    #: keys a family's mapping dropped on purpose, with the reason (filled by ``Encoder.weights_state``)
    dropped: dict[str, str] = field(default_factory=dict)


def tensor_state(obj: Any, path: str | Path, where: str = "") -> dict[str, torch.Tensor]:
    """``obj`` as a state dict: a non-empty mapping of string names to tensors (``where``: the wrapper key, for
    the message); else one ValueError line naming the file and the first offending key."""
    inside = f" under {where!r}" if where else ""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a dict of tensors{inside}, found {type(obj).__name__}")
    if not obj:
        raise ValueError(f"{path}: the dict of tensors{inside} is empty")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: key {key!r}{inside} is {type(key).__name__}, not a name (str)")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: {key}{inside} is {type(value).__name__}, not a tensor")
    return dict(obj)


def unwrap_state(obj: Any, path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """(state dict, wrapper key) of a loaded file: under the first of ``state_dict``, ``state_dict_ema``,
    ``model``, ``module`` that holds a dict, else the top level; checked by `tensor_state`."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    for key in _WRAPPERS:
        if isinstance(obj.get(key), Mapping):
            return tensor_state(obj[key], path, key), key
    return tensor_state(obj, path), None


def _strip(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for p in prefixes:
            if key.startswith(p):
                key = key[len(p) :]
        out[key] = value
    return out


def _backbone_family(keys: list[str]) -> str | None:
    if any(k == "storage_tokens" or (k.startswith("blocks.") and k.endswith(".gamma_1")) for k in keys):
        return "dinov3"
    if any(k.startswith(("layer.", "model.layer.")) and k.endswith(".layer_scale1.lambda1") for k in keys):
        return "dinov3"  # Hugging Face transformers' DINOv3 layout
    if any(k.startswith("blocks.") and k.endswith(".ls1.gamma") for k in keys):
        return "dinov2"
    if any(".blocks." in k and k.split(".")[0] in ("stages", "layers") for k in keys):
        return "swin"
    if any(k.startswith("stage1_conv_embed") for k in keys):
        return "cswin"
    if any(".conv2.fc1." in k or ".conv2.conv." in k or ".conv2.bn0." in k for k in keys):
        return "resnest"
    if any(k.startswith(("layer1.", "stem.", "conv1.")) for k in keys):
        return "resnet"
    return None


def _swin_window(state: Mapping[str, torch.Tensor]) -> int | None:
    """Window of the first block with a position table: the table has (2w-1)² rows."""
    for key, value in state.items():
        if key.endswith("relative_position_bias_table") and value.ndim == 2:
            side = round(value.shape[0] ** 0.5)
            return (side + 1) // 2
    return None


def detect_format(obj: Any, path: str | Path = "<memory>") -> WeightsFile:
    """Unwrap and classify a loaded file (see the module doc for the formats); ValueError if none fits."""
    path = Path(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    meta = {k: v for k, v in obj.items() if not isinstance(v, (torch.Tensor, Mapping)) or k == "meta"}
    if obj.get("format") == "stcl-model/1":
        state = tensor_state(obj.get("state_dict"), path, "state_dict")
        bb = [k[len("backbone.") :] for k in state if k.startswith("backbone.")]
        fam = _backbone_family([k[len("model.") :] if k.startswith("model.") else k for k in bb])
        backbone_state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        return WeightsFile(path, "stcl-model", state, fam, _swin_window(backbone_state), True, meta)
    inner, wrapper = unwrap_state(obj, path)
    state = _strip(inner, ("module.",))
    keys = list(state)
    if any(k.startswith("backbone.") for k in keys):
        backbone_keys = [k[len("backbone.") :] for k in keys if k.startswith("backbone.")]
        fam = _backbone_family(backbone_keys)
        backbone_state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        heads = any(k.startswith("decode_head.") for k in keys)
        name = "cswin-official" if fam == "cswin" and not heads else "mmseg"
        return WeightsFile(path, name, state, fam, _swin_window(backbone_state), heads, meta)
    fam = _backbone_family(keys)
    if fam == "swin":
        # PatchMerging ends stage 0 in the official layout and starts stage 1 in timm's; without any
        # PatchMerging (one stage), stored index buffers mark the official release.
        if any(k.startswith("layers.0.downsample.") for k in keys):
            official = True
        elif any(k.startswith("layers.1.downsample.") for k in keys):
            official = False
        else:
            official = any(k.endswith("relative_position_index") for k in keys)
        return WeightsFile(
            path, "swin-official" if official else "swin-timm", state, fam, _swin_window(state), False, meta
        )
    if fam == "cswin":
        return WeightsFile(path, "cswin-official", state, fam, None, False, meta)
    if fam == "dinov3" and any(k.startswith("embeddings.patch_embeddings.") for k in keys):
        return WeightsFile(path, "dinov3-hf", state, fam, None, False, meta)
    if fam in ("dinov2", "dinov3"):
        official = any(k in ("mask_token", "register_tokens", "storage_tokens") for k in keys)
        return WeightsFile(path, f"{fam}-{'official' if official else 'timm'}", state, fam, None, False, meta)
    if fam in ("resnet", "resnest"):
        return WeightsFile(path, "resnet-timm", state, fam, None, False, meta)
    raise ValueError(f"{path}: unrecognised weights layout (first keys: {', '.join(keys[:4])}); wrapper {wrapper!r}")


def open_weights(path: str | Path, what: str = "weights file") -> WeightsFile:
    """`read_weights_file` + `detect_format`."""
    return detect_format(read_weights_file(path, what), path)
