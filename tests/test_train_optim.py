"""Optimiser parameter groups and the warmup + poly schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stcl.params import OptimizerParams
from stcl.train.optim import WarmupPolySchedule, build_optimizer, param_groups


class _SwinLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.attn = nn.Linear(8, 8)
        self.attn.relative_position_bias_table = nn.Parameter(torch.zeros(9, 2))
        self.norm1 = nn.LayerNorm(8)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 1)


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_adamw_groups_follow_mmseg_no_decay_rules() -> None:
    model = _SwinLike()
    groups = {g["name"]: g for g in param_groups(model, 0.01)}
    assert _names(model, groups["no_decay"]) == {
        "absolute_pos_embed",
        "attn.relative_position_bias_table",
        "norm1.weight",
        "norm1.bias",
        "bn1.weight",
        "bn1.bias",
    }
    assert _names(model, groups["decay"]) == {"attn.weight", "attn.bias", "conv.weight", "conv.bias"}
    assert groups["decay"]["weight_decay"] == 0.01 and groups["no_decay"]["weight_decay"] == 0.0


def test_frozen_parameters_are_left_out() -> None:
    model = _SwinLike()
    model.conv.weight.requires_grad_(False)
    names = set().union(*(_names(model, g) for g in param_groups(model, 0.01)))
    assert "conv.weight" not in names and "conv.bias" in names


def test_sgd_decays_everything_and_adamw_uses_groups() -> None:
    model = _SwinLike()
    sgd = build_optimizer(model, OptimizerParams(name="sgd", lr=0.01, weight_decay=1e-4, momentum=0.9))
    assert isinstance(sgd, torch.optim.SGD) and len(sgd.param_groups) == 1
    assert sgd.param_groups[0]["weight_decay"] == 1e-4 and sgd.param_groups[0]["momentum"] == 0.9
    adamw = build_optimizer(model, OptimizerParams(name="adamw", lr=7e-5, weight_decay=0.01))
    assert isinstance(adamw, torch.optim.AdamW)
    assert sorted(g["weight_decay"] for g in adamw.param_groups) == [0.0, 0.01]


def test_warmup_then_poly_matches_mmcv_formula() -> None:
    p = OptimizerParams(lr=1e-3, warmup_iters=10, warmup_ratio=1e-6, power=1.0, min_lr=0.0)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=p.lr)
    s = WarmupPolySchedule(opt, p, max_iters=100)
    assert s.lr_at(0) == pytest.approx(1e-3 * 1e-6)
    poly = lambda i: 1e-3 * (1 - i / 100)  # noqa: E731
    assert s.lr_at(5) == pytest.approx(poly(5) * (1 - 0.5 * (1 - 1e-6)))
    assert s.lr_at(10) == pytest.approx(poly(10))
    assert s.lr_at(100) == pytest.approx(0.0)
    lrs = [s.lr_at(i) for i in range(10, 101)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    s.set_iter(37)
    assert opt.param_groups[0]["lr"] == pytest.approx(poly(37))
    s2 = WarmupPolySchedule(opt, p, max_iters=100)
    s2.load_state_dict(s.state_dict())
    assert s2.get_last_lr() == s.get_last_lr()


def test_min_lr_and_power() -> None:
    p = OptimizerParams(lr=1.0, warmup_iters=0, power=2.0, min_lr=0.1)
    s = WarmupPolySchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), p, max_iters=10)
    assert s.lr_at(0) == pytest.approx(1.0)
    assert s.lr_at(5) == pytest.approx(0.9 * 0.25 + 0.1)
    assert s.lr_at(10) == pytest.approx(0.1)
