"""Models of an ensemble: loading checkpoints as named predictors, the precision they run at, weights.

An ensemble's probabilities are the weighted mean of its members' TTA softmax probabilities (paper 3.4,
Table 4 "Teacher"): ``probs = Σ_m w_m · probs_m`` with weights normalised to sum 1 (equal unless given);
`stcl.infer.frames.blend` computes it from the probabilities the frame loop yields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from stcl.infer.multiscale import AMP_MODES
from stcl.infer.sliding import Predictor

__all__ = ["normalized_weights", "inference_amp", "load_models"]


def normalized_weights(count: int, weights: Sequence[float] | None) -> list[float]:
    """``weights`` scaled to sum 1 (equal weights if None); ValueError on a wrong length or value."""
    if count <= 0:
        raise ValueError("an ensemble needs at least one model")
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise ValueError(f"weights: expected {count} values (one per model), got {len(weights)}")
    if any(not w > 0 for w in weights):
        raise ValueError(f"weights must be positive, got {list(weights)}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def inference_amp(amp: str, device: str | torch.device) -> str:
    """The autocast actually used: ``amp`` on CUDA, "off" (float32) on any other device.

    CPU bf16 autocast is slower than float32 on most CPUs and is not what the GPU runs, so CPU inference
    (tests, the embedded chain) stays float32 whatever the preset says.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be 'off', 'bf16' or 'fp16', got {amp!r}")
    return amp if torch.device(device).type == "cuda" else "off"


def load_models(
    checkpoints: Mapping[str, str | Path],
    device: str | torch.device = "cpu",
    amp: str = "off",
    label_space: str = "vspw",
) -> dict[str, Predictor]:
    """Load checkpoints written by `stcl.models.checkpoints.save_model` as named predictors.

    Args:
        checkpoints: name → model.pt file.
        device: where the models run.
        amp: the TTA's autocast ("off", "bf16", "fp16"); `inference_amp` decides what runs on ``device``.
            Probabilities stay float32.
        label_space: every checkpoint must predict this label space (ValueError naming the file otherwise).

    Returns:
        name → ``(B, 3, h, w) float 0..255 → float32 (B, C, h, w)`` logits.
    """
    from stcl.models.checkpoints import load_model

    device = torch.device(device)
    used = inference_amp(amp, device)
    models: dict[str, Predictor] = {}
    num_classes = None
    for name, path in checkpoints.items():
        path = Path(path)
        model, meta = load_model(path, map_location="cpu")  # a missing file or a folder: one line naming it
        if meta.get("label_space") != label_space:
            raise ValueError(f"{path}: label space {meta.get('label_space')!r}, expected {label_space!r}")
        if num_classes is not None and meta.get("num_classes") != num_classes:
            raise ValueError(f"{path}: {meta.get('num_classes')} classes, the other checkpoints {num_classes}")
        num_classes = meta.get("num_classes")
        model = model.to(device).eval()
        models[name] = _autocast_predict(model.predict, device, used)
    return models


def _autocast_predict(predict: Predictor, device: torch.device, amp: str) -> Predictor:
    if amp == "off":
        return predict
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16

    def run(x: Tensor) -> Tensor:
        with torch.autocast(device_type=device.type, dtype=dtype):
            return predict(x).float()

    return run
