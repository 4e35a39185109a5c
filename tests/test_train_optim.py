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


def _mmseg_named_mirror(model: nn.Module, cls_name: str) -> tuple[nn.Module, dict[str, str]]:
    """A module holding ``model``'s parameters under mmseg's BEiT names (``backbone.layers.N``,
    ``backbone.patch_embed``, ``backbone.cls_token``…), its backbone class named ``cls_name``; and the map
    mirror name → our name."""
    root = nn.Module()
    names = {}
    for name, p in model.named_parameters():
        mirror = (
            name.replace("backbone.model.blocks.", "backbone.layers.")
            .replace("backbone.model.patch_embed.", "backbone.patch_embed.")
            .replace("backbone.model.", "backbone.")
        )
        names[mirror] = name
        parts = mirror.split(".")
        node = root
        for i, part in enumerate(parts[:-1]):
            if not hasattr(node, part):
                child = type(cls_name, (nn.Module,), {})() if (i == 0 and part == "backbone") else nn.Module()
                node.add_module(part, child)
            node = getattr(node, part)
        node.register_parameter(parts[-1], p)
    return root, names


def test_layer_decay_equals_mmseg_learning_rate_decay_constructor() -> None:
    """lr scale of every parameter equals mmseg 1.2.2's LearningRateDecayOptimizerConstructor (layer_wise,
    get_layer_id_for_vit) on the same parameters under mmseg's BEiT names; weight decay too, except the class
    token and position table, which we (as BEiT's own code) do not decay."""
    from mmseg.engine.optimizers import LearningRateDecayOptimizerConstructor

    from stcl.models import build_segmentor
    from stcl.params import ModelParams
    from stcl.train.optim import layer_decay_groups

    model = build_segmentor(ModelParams(backbone="dinov2_tiny", channels=8, aux_channels=8), 3, proj_dim=4)
    ours = {}
    for g in layer_decay_groups(model, 0.05, 0.9):
        for p in g["params"]:
            ours[id(p)] = (g["lr_scale"], g["weight_decay"])
    mirror, names = _mmseg_named_mirror(model, "BEiTMirror")
    cons = LearningRateDecayOptimizerConstructor(
        dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05)),
        dict(num_layers=model.backbone.num_layers, decay_rate=0.9, decay_type="layer_wise"),
    )
    params: list[dict] = []
    cons.add_params(params, mirror)
    checked = 0
    by_name = dict(mirror.named_parameters())
    for group in params:
        for name in group["param_names"]:
            scale, wd = ours[id(by_name[name])]
            assert scale == pytest.approx(group["lr_scale"], rel=1e-12), name
            if names[name] not in ("backbone.model.cls_token", "backbone.model.pos_embed"):
                assert wd == group["weight_decay"], name
            checked += 1
    assert checked == len(ours) == sum(1 for _ in model.parameters())
    assert len({s for s, _ in ours.values()}) == model.backbone.num_layers + 2  # embeddings, 4 blocks, rest


def test_schedule_multiplies_each_groups_lr_scale() -> None:
    from stcl.models import build_segmentor
    from stcl.params import ModelParams

    model = build_segmentor(ModelParams(backbone="dinov3_tiny", channels=8, aux_channels=8), 3)
    opt = build_optimizer(model, OptimizerParams(lr=1e-3, layer_decay=0.5, warmup_iters=0))
    sched = WarmupPolySchedule(opt, OptimizerParams(lr=1e-3, layer_decay=0.5, warmup_iters=0), 10)
    sched.set_iter(5)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(sched.lr_at(5) * g["lr_scale"])
    assert min(g["lr_scale"] for g in opt.param_groups) == pytest.approx(0.5 ** (4 + 1))


def test_layer_decay_on_a_cnn_is_refused_in_one_line() -> None:
    from stcl.models import build_segmentor
    from stcl.params import ModelParams

    model = build_segmentor(ModelParams(backbone="resnet18", channels=8, aux_channels=8), 3)
    with pytest.raises(ValueError, match=r"optimizer\.layer_decay: TimmCnnEncoder has no layers to decay"):
        build_optimizer(model, OptimizerParams(layer_decay=0.9))
