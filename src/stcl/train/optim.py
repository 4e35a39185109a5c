"""Optimisers and the learning-rate schedule of the paper (3.2) with mmseg's conventions.

* AdamW (transformers): no weight decay on ``absolute_pos_embed``, ``relative_position_bias_table`` and
  every parameter of a normalisation layer (weight *and* bias), as mmseg's Swin configs do with
  ``paramwise_cfg.custom_keys = {absolute_pos_embed, relative_position_bias_table, norm: decay_mult=0}``.
  We select norm layers by module type (BatchNorm/SyncBatchNorm/LayerNorm/GroupNorm/InstanceNorm) instead of
  mmseg's "norm" substring, so ResNet's ``bn1`` is covered too. Other biases (conv, linear) keep their
  weight decay, as in mmseg.
* SGD (CNNs): momentum, weight decay on every parameter (mmseg's CNN configs use no paramwise rules).
* Layer-wise lr decay (``optimizer.layer_decay = d``, ViT encoders; mmseg's
  ``LearningRateDecayOptimizerConstructor`` with ``decay_type="layer_wise"`` and ``get_layer_id_for_vit``, as
  the BEiT and DINOv2 segmentation recipes use): with L blocks, ``num_layers = L + 2``; the layer id is 0 for
  the patch embedding, tokens and position table, i + 1 for block i, and L + 1 for everything else (final
  norm, neck, heads); a parameter's lr is ``lr · d^(num_layers − 1 − id)``. Weight decay as mmseg's
  constructor: none on 1-D parameters and biases, and none on the tokens / position table (the encoder's
  ``no_weight_decay``; mmseg means these by its ``pos_embed``/``cls_token`` rule). Groups carry ``lr_scale``,
  which the schedule multiplies in.
* Schedule: mmcv's linear warmup on top of poly decay:
  ``poly(i) = (lr - min_lr) * (1 - i / iters) ** power + min_lr`` and during warmup
  ``lr(i) = poly(i) * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio))``.
"""

from __future__ import annotations

import torch
from torch import nn

from stcl.params import OptimizerParams

__all__ = ["NO_DECAY_KEYS", "param_groups", "layer_decay_groups", "build_optimizer", "WarmupPolySchedule"]

NO_DECAY_KEYS: tuple[str, ...] = ("absolute_pos_embed", "relative_position_bias_table")
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed group (AdamW rules above).

    Returns:
        ``[{"params": [...], "weight_decay": weight_decay, "name": "decay"},
        {"params": [...], "weight_decay": 0.0, "name": "no_decay"}]`` (empty groups dropped).
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NORM_TYPES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in no_decay_ids or any(key in name for key in NO_DECAY_KEYS):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def layer_decay_groups(model: nn.Module, weight_decay: float, decay: float) -> list[dict]:
    """Parameter groups with layer-wise lr decay (module doc); the model's backbone must name layers.

    Returns one group per (layer id, decayed or not): ``{"params", "weight_decay", "lr_scale", "name"}``.
    """
    target = model.module if hasattr(model, "module") else model
    backbone = getattr(target, "backbone", None)
    if backbone is None or not hasattr(backbone, "layer_id"):
        name = type(backbone).__name__ if backbone is not None else type(target).__name__
        raise ValueError(f"optimizer.layer_decay: {name} has no layers to decay (ViT encoders: dinov2_*, dinov3_*)")
    num_layers = backbone.num_layers + 2
    no_wd = {f"backbone.{n}" for n in backbone.no_weight_decay()}
    groups: dict[str, dict] = {}
    for name, p in target.named_parameters():
        if not p.requires_grad:
            continue
        quiet = p.dim() == 1 or name.endswith(".bias") or name in no_wd
        layer = backbone.layer_id(name[len("backbone.") :]) if name.startswith("backbone.") else num_layers - 1
        key = f"layer_{layer}_{'no_decay' if quiet else 'decay'}"
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": 0.0 if quiet else weight_decay,
                "lr_scale": decay ** (num_layers - layer - 1),
                "name": key,
            }
        groups[key]["params"].append(p)
    return list(groups.values())


def build_optimizer(model: nn.Module, params: OptimizerParams) -> torch.optim.Optimizer:
    """AdamW (with the no-decay groups, or layer-decay groups) or SGD (decay everywhere), per ``params.name``."""
    if params.layer_decay is not None:  # AdamW only (`stcl.params.OptimizerParams` validates it)
        groups = layer_decay_groups(model, params.weight_decay, params.layer_decay)
        return torch.optim.AdamW(groups, lr=params.lr, betas=tuple(params.betas), weight_decay=0.0)
    if params.name == "adamw":
        return torch.optim.AdamW(
            param_groups(model, params.weight_decay), lr=params.lr, betas=tuple(params.betas), weight_decay=0.0
        )
    if params.name == "sgd":
        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD(trainable, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)
    raise ValueError(f"optimizer.name must be 'adamw' or 'sgd', got {params.name!r}")


class WarmupPolySchedule:
    """Linear warmup then poly decay, stepped once per optimiser step (an iteration).

    The learning rate is a pure function of the iteration, so the schedule's state is that iteration only.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: OptimizerParams, max_iters: int) -> None:
        if max_iters <= 0:
            raise ValueError(f"max_iters must be > 0, got {max_iters}")
        self.optimizer = optimizer
        self.base_lr = params.lr
        self.min_lr = params.min_lr
        self.power = params.power
        self.warmup_iters = params.warmup_iters
        self.warmup_ratio = params.warmup_ratio
        self.max_iters = max_iters
        self.last_iter = 0
        self.set_iter(0)

    def lr_at(self, it: int) -> float:
        """Learning rate used for the optimiser step of iteration `it` (0-based)."""
        it = min(max(it, 0), self.max_iters)
        lr = (self.base_lr - self.min_lr) * (1.0 - it / self.max_iters) ** self.power + self.min_lr
        if it < self.warmup_iters:
            k = (1.0 - it / self.warmup_iters) * (1.0 - self.warmup_ratio)
            lr *= 1.0 - k
        return lr

    def set_iter(self, it: int) -> None:
        """Set every group's lr for iteration `it`."""
        self.last_iter = it
        lr = self.lr_at(it)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def get_last_lr(self) -> float:
        return self.lr_at(self.last_iter)

    def state_dict(self) -> dict:
        return {"last_iter": self.last_iter}

    def load_state_dict(self, state: dict) -> None:
        self.set_iter(int(state["last_iter"]))
