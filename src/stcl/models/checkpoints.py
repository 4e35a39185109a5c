"""Model files: save/load the ``stcl-model/1`` format, initialise a stage from another, convert mmseg weights.

A model file is a dict loadable with ``torch.load(path, weights_only=True)``::

    {"format": "stcl-model/1", "state_dict": {...}, "model_params": {...ModelParams as JSON...},
     "num_classes": int, "proj_dim": int | None, "label_space": str, "class_names": [str, ...],
     "extra": {...JSON-like...}}

It is written atomically (`stcl.atomic`: temporary name in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stcl.atomic import atomic_path
from stcl.models.encoders import LoadReport
from stcl.models.segmentor import Segmentor, build_segmentor
from stcl.params import ModelParams

__all__ = [
    "FORMAT",
    "save_model",
    "load_model",
    "read_model_file",
    "load_init_weights",
    "convert_mmseg_checkpoint",
    "mmseg_swin_to_timm",
    "timm_swin_to_mmseg",
]

FORMAT = "stcl-model/1"


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def save_model(
    path: str | Path,
    model: nn.Module,
    *,
    model_params: ModelParams,
    num_classes: int,
    proj_dim: int | None,
    label_space: str,
    class_names: list[str] | tuple[str, ...],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (a Segmentor, possibly DDP-wrapped) to ``path`` atomically; returns the path.

    ``extra`` must hold only JSON-like values (str, int, float, bool, None, lists, dicts) so that the file
    stays loadable with ``weights_only=True``.
    """
    path = Path(path)
    if len(class_names) != num_classes:
        raise ValueError(f"class_names: {len(class_names)} names for num_classes={num_classes}")
    state = {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}
    obj = {
        "format": FORMAT,
        "state_dict": state,
        "model_params": model_params.model_dump(mode="json"),
        "num_classes": int(num_classes),
        "proj_dim": None if proj_dim is None else int(proj_dim),
        "label_space": str(label_space),
        "class_names": [str(c) for c in class_names],
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def read_model_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a ``stcl-model/1`` file (weights_only); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: not a readable model file ({err})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: not a {FORMAT} model file (format: {got!r})")
    missing = [k for k in ("state_dict", "model_params", "num_classes", "proj_dim") if k not in obj]
    if missing:
        raise ValueError(f"{path}: model file lacks {', '.join(missing)}")
    return obj


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Segmentor, dict[str, Any]]:
    """Rebuild the Segmentor stored in ``path`` and load its weights strictly.

    Returns (model, meta) where meta is the file's dict without ``state_dict``. The model is in train mode
    as built: call ``.eval()`` for inference. Pretrained encoder files named in its params are not read.
    """
    obj = read_model_file(path, map_location)
    params = ModelParams.model_validate(obj["model_params"])
    model = build_segmentor(params, obj["num_classes"], obj["proj_dim"], load_pretrained=False)
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not match the stored model params: {err}") from None
    model.to(map_location)
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    return model, meta


def load_init_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Initialise ``model`` from another stage's model file (or a raw/mmseg state-dict file).

    Tensors whose shape differs (``conv_seg`` for another label space, ``projection`` for another dim) are
    skipped and reported, as are keys missing on either side. mmseg checkpoints are converted first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: init weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a file we will not execute
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "Unsupported global" in ln), lines[0] if lines else type(err).__name__)
        raise ValueError(
            f"{path}: cannot be read with weights_only=True ({reason}); if it is a trusted mmseg/mmengine "
            "checkpoint, keep only its weights: torch.save({'state_dict': ckpt['state_dict']}, new_path)"
        ) from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        state = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = convert_mmseg_checkpoint(obj["state_dict"])
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = convert_mmseg_checkpoint(obj)
    else:
        raise ValueError(f"{path}: neither a {FORMAT} model file nor a state dict")
    target = _unwrap(model)
    own = target.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    report = LoadReport(
        source=str(path),
        loaded=len(usable),
        missing=sorted(k for k in own if k not in usable),
        unexpected=sorted(k for k in state if k not in own),
        mismatched=sorted(k for k in state if k in own and own[k].shape != state[k].shape),
    )
    target.load_state_dict(usable, strict=False)
    return report


# ---------------------------------------------------------------------------------------------------------
# mmseg → stcl key conversion


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
    channels are reordered from nn.Unfold's order to timm's; ``normN`` stay ``normN``. Buffers
    (``relative_position_index``, masks) are dropped: timm recomputes them.
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


def timm_swin_to_mmseg(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `mmseg_swin_to_timm` (without the dropped buffers); used to test the round trip."""
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
        out[new] = value
    return out


def _mmseg_resnet_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg ResNetV1c keys → timm resnet*c keys under ``model.`` (deep stem ``stem.N`` → ``conv1.N``/``bn1``)."""
    out = {}
    for key, value in state.items():
        new = re.sub(r"^stem\.([013456])\.", r"conv1.\1.", key)
        new = re.sub(r"^stem\.7\.", "bn1.", new)
        out[f"model.{new}"] = value
    return out


def convert_mmseg_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An mmseg EncoderDecoder state dict (``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``) → ours.

    Heads keep their names (ours are mmseg's); the backbone is converted by family: Swin (``stages.N.
    blocks``) and ResNetV1c (``stem.N``); CSWin backbones and keys already in our format pass through.
    """
    state = dict(state_dict["state_dict"]) if isinstance(state_dict.get("state_dict"), Mapping) else dict(state_dict)
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    rest = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    if any(k.startswith(("model.", "stage1_conv_embed.")) for k in backbone):
        converted = backbone  # already ours, or CSWin (whose names we keep)
    elif any(k.startswith("stages.") and ".blocks." in k for k in backbone):
        converted = mmseg_swin_to_timm(backbone)
    elif any(k.startswith("stem.") for k in backbone) or any(k.startswith("layer1.") for k in backbone):
        converted = _mmseg_resnet_to_timm(backbone)
    else:
        raise ValueError("convert_mmseg_checkpoint: unrecognised backbone keys (expected mmseg Swin or ResNetV1c)")
    return {**{f"backbone.{k}": v for k, v in converted.items()}, **rest}
