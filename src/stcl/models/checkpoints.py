"""Model files: save/load the ``stcl-model/1`` format, initialise a stage from another.

A model file is a dict loadable with ``torch.load(path, weights_only=True)``::

    {"format": "stcl-model/1", "state_dict": {...}, "model_params": {...ModelParams as JSON...},
     "num_classes": int, "proj_dim": int | None, "label_space": str, "class_names": [str, ...],
     "extra": {...JSON-like...}, "loaded_from": [{"source", "format", "loaded", "missing", ...}, ...]}

``loaded_from`` records every weights file loaded into the model before training (``model.pretrained``,
a stage's init file) and what was left at initialisation.

It is written atomically (`stcl.atomic`: temporary name in the same folder, then ``os.replace``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stcl.atomic import write_stream
from stcl.models.files import read_weights_file, tensor_state
from stcl.models.loading import LoadReport, load_segmentor_weights
from stcl.models.segmentor import Segmentor, build_segmentor
from stcl.params import ModelParams

__all__ = ["FORMAT", "save_model", "load_model", "read_model_file", "load_init_weights"]

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
        "loaded_from": list(getattr(_unwrap(model), "loaded_from", [])),
    }
    write_stream(path, lambda f: torch.save(obj, f))
    return path


def read_model_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a ``stcl-model/1`` file (weights_only); errors name the file."""
    path = Path(path)
    obj = read_weights_file(path, "model file")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: not a {FORMAT} model file (format: {got!r})")
    missing = [k for k in ("state_dict", "model_params", "num_classes", "proj_dim") if k not in obj]
    if missing:
        raise ValueError(f"{path}: model file lacks {', '.join(missing)}")
    tensor_state(obj["state_dict"], path, "state_dict")
    for key, none_ok in (("num_classes", False), ("proj_dim", True)):
        value = obj[key]
        if not ((value is None and none_ok) or (type(value) is int and value >= 1)):
            raise ValueError(f"{path}: {key} is {value!r}, expected a positive number{' or None' if none_ok else ''}")
    if not isinstance(obj["model_params"], dict):
        raise ValueError(f"{path}: model_params is {type(obj['model_params']).__name__}, expected a mapping")
    try:
        ModelParams.model_validate(obj["model_params"])
    except ValueError as err:  # pydantic's ValidationError: the first problem, on one line
        errors = getattr(err, "errors", lambda: [])()
        first = errors[0] if errors else {"loc": (), "msg": str(err)}
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{path}: model_params.{where}: {first['msg']}") from None
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
    except RuntimeError as err:  # torch lists every problem on its own line: the first, and how many
        problems = [ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()] or [str(err)]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"{path}: weights do not match the stored model params: {problems[0]}{more}") from None
    model.to(map_location)
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    return model, meta


def load_init_weights(model: nn.Module, path: str | Path, *, exclude: Iterable[str] = ()) -> LoadReport:
    """Initialise ``model`` strictly from another stage's model file, an mmseg checkpoint or a backbone file.

    Any key of the model not in the file, of the file not in the model, or of another shape is an error
    naming the file and the keys, except: patterns in ``exclude`` (``model.load_exclude``); the classifiers
    and projection of a model file of this project whose recorded class count / projection dim differ
    (COCO-pre → VSPW); heads a backbone-only file cannot hold. See `stcl.models.loading`.
    """
    return load_segmentor_weights(model, path, exclude=exclude, what="init weights file")
