"""The onnxruntime engine: files written by `stcl export` as window predictors of the one inference path.

A predictor here is exactly what `stcl.infer.sliding` calls (``(B, 3, h, w) float 0..255 → (B, C, h, w)``
logits): the sliding windows, the multi-scale + flip TTA (`stcl.infer.multiscale`) and the frame loop
(`stcl.infer.frames`) are the torch engine's, only the forward pass runs in onnxruntime (CPU). `load_predictors`
is the one switch between the engines (``--engine torch|onnxruntime`` of `stcl predict` and `stcl infer`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stcl.infer.sliding import Predictor

__all__ = ["ENGINES", "read_metadata", "load_onnx_models", "load_predictors"]

ENGINES = ("torch", "onnxruntime")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``stcl.*`` metadata of an exported file, JSON values decoded; ValueError naming a file that is not
    one (`stcl.models.onnx_export.FORMAT`)."""
    from stcl.models.onnx_export import FORMAT, require

    require("onnx")
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError and friends: not an ONNX file
        raise ValueError(f"{path}: not an ONNX file ({type(err).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("stcl.format") != FORMAT:
        raise ValueError(f"{path}: not a model exported by `stcl export` (no {FORMAT} metadata)")
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith("stcl."):
            continue
        name = key[len("stcl.") :]
        try:
            out[name] = json.loads(value) if name not in ("format", "version", "label_space", "backbone", "io") else value
        except ValueError:
            out[name] = value
    return out


class _OnnxPredictor:
    """(B, 3, h, w) float tensor → (B, C, h, w) float32 logits on the caller's device, via onnxruntime."""

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: Tensor) -> Tensor:
        array = np.ascontiguousarray(images.detach().float().cpu().numpy())
        (logits,) = self.session.run(["logits"], {"images": array})
        return torch.from_numpy(logits).to(images.device)


def load_onnx_models(
    files: Mapping[str, str | Path], label_space: str | None = "vspw", threads: int | None = None
) -> dict[str, Predictor]:
    """name → onnxruntime predictor of each exported file; checks the label space and class count as
    `stcl.infer.ensemble.load_models` does for checkpoints."""
    from stcl.models.onnx_export import require

    require("onnx", "onnxruntime")
    models: dict[str, Predictor] = {}
    classes = None
    for name, path in files.items():
        path = Path(path)
        meta = read_metadata(path)
        if label_space is not None and meta.get("label_space") != label_space:
            raise ValueError(f"{path}: label space {meta.get('label_space')!r}, expected {label_space!r}")
        if classes is not None and meta.get("num_classes") != classes:
            raise ValueError(f"{path}: {meta.get('num_classes')} classes, the other models {classes}")
        classes = meta.get("num_classes")
        models[name] = _OnnxPredictor(path, threads)
    return models


def load_predictors(
    files: Mapping[str, str | Path],
    device: str | torch.device,
    amp: str,
    engine: str = "torch",
    label_space: str = "vspw",
) -> dict[str, Predictor]:
    """The engine switch: model.pt files through torch (`stcl.infer.ensemble.load_models`) or files of
    `stcl export` through onnxruntime (CPU, float32; ``amp`` does not apply)."""
    if engine == "torch":
        from stcl.infer.ensemble import load_models

        return load_models(files, device, amp, label_space=label_space)
    if engine == "onnxruntime":
        return load_onnx_models(files, label_space)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
