"""Model ensembles: weighted average of the members' TTA softmax probabilities (paper 3.4, Table 4 "Teacher").

``probs = Σ_m w_m · tta_probs(model_m) / Σ_m w_m``; equal weights unless given. The same function serves
the inference ensemble (three models) and the pseudo-label teacher (two models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from stcl.infer.multiscale import TTA, tta_probs
from stcl.infer.sliding import Predictor

__all__ = ["Member", "normalized_weights", "ensemble_probs", "load_members"]


@dataclass(frozen=True)
class Member:
    """One ensemble member: a predictor ``(B, 3, h, w) → (B, C, h, w)`` logits and its weight."""

    predict: Predictor
    weight: float = 1.0
    name: str = "model"


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


@torch.inference_mode()
def ensemble_probs(members: Sequence[Member], image: Tensor, tta: TTA) -> Tensor:
    """Weighted mean of the members' TTA probabilities.

    Args:
        members: predictors and weights (weights are normalised to sum 1).
        image: (3, H, W) float 0..255 on the members' device.
        tta: scales, flips and sliding window.

    Returns:
        (C, H, W) float32 probabilities.
    """
    weights = normalized_weights(len(members), [m.weight for m in members])
    total: Tensor | None = None
    for member, w in zip(members, weights):
        probs = tta_probs(member.predict, image, tta)
        if total is not None and probs.shape != total.shape:
            raise ValueError(
                f"ensemble member {member.name!r} predicts {probs.shape[0]} classes, others {total.shape[0]}"
            )
        total = probs.mul_(w) if total is None else total.add_(probs, alpha=w)
    assert total is not None
    return total


def load_members(
    checkpoints: Sequence[str | Path],
    weights: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
    amp: str = "off",
    label_space: str = "vspw",
) -> list[Member]:
    """Load checkpoints written by `stcl.models.checkpoints.save_model` as ensemble members.

    Args:
        checkpoints: model.pt files.
        weights: one per checkpoint (None = equal).
        device: where the models run.
        amp: "off", "bf16" or "fp16": autocast dtype of the forward pass (probabilities stay float32).
        label_space: every checkpoint must predict this label space (ValueError naming the file otherwise).
    """
    from stcl.models.checkpoints import load_model

    if amp not in ("off", "bf16", "fp16"):
        raise ValueError(f"amp must be 'off', 'bf16' or 'fp16', got {amp!r}")
    norm = normalized_weights(len(checkpoints), weights)
    device = torch.device(device)
    members = []
    num_classes = None
    for path, w in zip(checkpoints, norm):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint not found")
        model, meta = load_model(path, map_location="cpu")
        if meta.get("label_space") != label_space:
            raise ValueError(f"{path}: label space {meta.get('label_space')!r}, expected {label_space!r}")
        if num_classes is not None and meta.get("num_classes") != num_classes:
            raise ValueError(f"{path}: {meta.get('num_classes')} classes, the other checkpoints {num_classes}")
        num_classes = meta.get("num_classes")
        model = model.to(device).eval()
        members.append(Member(predict=_autocast_predict(model.predict, device, amp), weight=w, name=str(path)))
    return members


def _autocast_predict(predict: Predictor, device: torch.device, amp: str) -> Predictor:
    if amp == "off":
        return predict
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16

    def run(x: Tensor) -> Tensor:
        with torch.autocast(device_type=device.type, dtype=dtype):
            return predict(x).float()

    return run
