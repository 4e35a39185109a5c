"""Reading weights files safely, and telling which public format a file is in.

`read_weights_file` opens ``.pth``/``.pt``/``.bin`` files with ``torch.load(weights_only=True)`` (never the
unsafe unpickler) and ``.safetensors`` files with safetensors; any failure becomes one line naming the file
and what is wrong with it (missing, empty, truncated, not a torch file, pickled code refused).

`detect_format` unwraps a loaded file (`unwrap_state`: the one unwrapping of ``state_dict`` /
``state_dict_ema`` / ``model`` / ``module`` wrappers and ``module.`` prefixes) and names its layout: ``stcl-model``
(a model file of this project, `stcl.models.checkpoints`), ``mmseg`` (an mmsegmentation model-zoo checkpoint:
``{"state_dict": {backbone.*, decode_head.*, ...}, "meta": ...}``), or a format of one encoder family, which
its module detects (``file_format``; the formats are listed in `stcl.families.FORMATS`). The family whose
layout the backbone keys are is recorded too (`WeightsFile.backbone`).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stcl.families import FAMILIES, family_module

__all__ = [
    "WeightsFile",
    "read_weights_file",
    "tensor_state",
    "unwrap_state",
    "backbone_format",
    "detect_format",
    "open_weights",
]

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
    ``model``, ``module`` that holds a dict, else the top level; checked by `tensor_state`; the ``module.``
    prefixes of ``nn.DataParallel`` removed."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    wrapper = next((key for key in _WRAPPERS if isinstance(obj.get(key), Mapping)), None)
    state = tensor_state(obj if wrapper is None else obj[wrapper], path, wrapper or "")
    return {k.removeprefix("module."): v for k, v in state.items()}, wrapper


def backbone_format(keys: list[str]) -> tuple[str, str] | None:
    """(family, format) of backbone keys (without ``backbone.``), asked of each family's module in table
    order (`stcl.families.FAMILIES`); None when no family knows them."""
    for fam in FAMILIES:
        fmt = family_module(fam).file_format(fam.name, keys)
        if fmt is not None:
            return fam.name, fmt
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
        backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        found = backbone_format([k.removeprefix("model.") for k in backbone])
        fam = found[0] if found else None
        return WeightsFile(path, "stcl-model", state, fam, _swin_window(backbone), True, meta)
    state, wrapper = unwrap_state(obj, path)
    keys = list(state)
    if any(k.startswith("backbone.") for k in keys):
        backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        found = backbone_format(list(backbone))
        fam = found[0] if found else None
        heads = any(k.startswith("decode_head.") for k in keys)
        # the CSWin segmentation release holds its backbone under ``backbone.``, without heads
        name = "cswin-official" if fam == "cswin" and not heads else "mmseg"
        return WeightsFile(path, name, state, fam, _swin_window(backbone), heads, meta)
    found = backbone_format(keys)
    if found is None:
        raise ValueError(
            f"{path}: unrecognised weights layout (first keys: {', '.join(keys[:4])}); wrapper {wrapper!r}"
        )
    fam, name = found
    return WeightsFile(path, name, state, fam, _swin_window(state) if fam == "swin" else None, False, meta)


def open_weights(path: str | Path, what: str = "weights file") -> WeightsFile:
    """`read_weights_file` + `detect_format`."""
    return detect_format(read_weights_file(path, what), path)
