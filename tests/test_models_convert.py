"""mmseg checkpoint conversion on synthetic state dicts built from mmseg's real key patterns."""

from __future__ import annotations

import pytest
import torch
from timm.models.swin_transformer import get_relative_position_index
from torch import nn

from stcl.models import build_segmentor, convert_mmseg_checkpoint, load_init_weights
from stcl.models.swin import mmseg_swin_to_timm, timm_swin_to_mmseg
from stcl.params import ModelParams

EMBED, DEPTHS, HEADS, WINDOW = 32, (1, 1, 2, 1), (1, 2, 4, 8), 7  # the "swin_mini" encoder
CH, AUX, K = 16, 8, 5


def _rand(g, *shape):
    return torch.randn(*shape, generator=g)


def _bn(prefix, n, g):
    return {
        f"{prefix}.weight": _rand(g, n),
        f"{prefix}.bias": _rand(g, n),
        f"{prefix}.running_mean": _rand(g, n),
        f"{prefix}.running_var": _rand(g, n).abs(),
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def _conv_module(prefix, cin, cout, k, g):
    return {f"{prefix}.conv.weight": _rand(g, cout, cin, k, k), **_bn(f"{prefix}.bn", cout, g)}


def mmseg_heads(in_channels, g):
    """decode_head.* (UPerHead) and auxiliary_head.* (FCNHead) as mmseg names them."""
    sd = {"decode_head.conv_seg.weight": _rand(g, K, CH, 1, 1), "decode_head.conv_seg.bias": _rand(g, K)}
    for s in range(4):
        sd |= _conv_module(f"decode_head.psp_modules.{s}.1", in_channels[-1], CH, 1, g)
    sd |= _conv_module("decode_head.bottleneck", in_channels[-1] + 4 * CH, CH, 3, g)
    for i, c in enumerate(in_channels[:-1]):
        sd |= _conv_module(f"decode_head.lateral_convs.{i}", c, CH, 1, g)
        sd |= _conv_module(f"decode_head.fpn_convs.{i}", CH, CH, 3, g)
    sd |= _conv_module("decode_head.fpn_bottleneck", 4 * CH, CH, 3, g)
    sd |= _conv_module("auxiliary_head.convs.0", in_channels[2], AUX, 3, g)
    sd |= {"auxiliary_head.conv_seg.weight": _rand(g, K, AUX, 1, 1), "auxiliary_head.conv_seg.bias": _rand(g, K)}
    return sd


def mmseg_swin_backbone(g):
    """backbone.* of mmseg's SwinTransformer (PatchMerging at the end of stages 0-2, norm0..3 outputs)."""
    sd = {
        "patch_embed.projection.weight": _rand(g, EMBED, 3, 4, 4),
        "patch_embed.projection.bias": _rand(g, EMBED),
        "patch_embed.norm.weight": _rand(g, EMBED),
        "patch_embed.norm.bias": _rand(g, EMBED),
    }
    for i, (depth, heads) in enumerate(zip(DEPTHS, HEADS)):
        c = EMBED * 2**i
        for j in range(depth):
            p = f"stages.{i}.blocks.{j}."
            sd |= {
                p + "norm1.weight": _rand(g, c),
                p + "norm1.bias": _rand(g, c),
                p + "attn.w_msa.relative_position_bias_table": _rand(g, (2 * WINDOW - 1) ** 2, heads),
                p + "attn.w_msa.relative_position_index": get_relative_position_index(WINDOW, WINDOW),
                p + "attn.w_msa.qkv.weight": _rand(g, 3 * c, c),
                p + "attn.w_msa.qkv.bias": _rand(g, 3 * c),
                p + "attn.w_msa.proj.weight": _rand(g, c, c),
                p + "attn.w_msa.proj.bias": _rand(g, c),
                p + "norm2.weight": _rand(g, c),
                p + "norm2.bias": _rand(g, c),
                p + "ffn.layers.0.0.weight": _rand(g, 4 * c, c),
                p + "ffn.layers.0.0.bias": _rand(g, 4 * c),
                p + "ffn.layers.1.weight": _rand(g, c, 4 * c),
                p + "ffn.layers.1.bias": _rand(g, c),
            }
        if i < len(DEPTHS) - 1:
            sd |= {
                f"stages.{i}.downsample.norm.weight": _rand(g, 4 * c),
                f"stages.{i}.downsample.norm.bias": _rand(g, 4 * c),
                f"stages.{i}.downsample.reduction.weight": _rand(g, 2 * c, 4 * c),
            }
        sd |= {f"norm{i}.weight": _rand(g, c), f"norm{i}.bias": _rand(g, c)}
    return sd


@pytest.fixture(scope="module")
def mmseg_swin_upernet():
    g = torch.Generator().manual_seed(0)
    backbone = mmseg_swin_backbone(g)
    heads = mmseg_heads([EMBED * 2**i for i in range(4)], g)
    return {**{f"backbone.{k}": v for k, v in backbone.items()}, **heads}


def _swin_model():
    return build_segmentor(ModelParams(backbone="swin_mini", channels=CH, aux_channels=AUX), K)


def test_mmseg_swin_upernet_loads_strictly(mmseg_swin_upernet):
    model = _swin_model()
    model.load_state_dict(convert_mmseg_checkpoint(mmseg_swin_upernet), strict=True)
    src = mmseg_swin_upernet
    assert torch.equal(
        model.backbone.model.layers[2].blocks[1].attn.qkv.weight,
        src["backbone.stages.2.blocks.1.attn.w_msa.qkv.weight"],
    )
    assert torch.equal(
        model.backbone.model.layers[3].blocks[0].mlp.fc2.bias, src["backbone.stages.3.blocks.0.ffn.layers.1.bias"]
    )
    assert torch.equal(model.backbone.norm3.weight, src["backbone.norm3.weight"])
    assert torch.equal(
        model.decode_head.psp_modules[3][1].bn.running_var, src["decode_head.psp_modules.3.1.bn.running_var"]
    )
    assert torch.equal(model.auxiliary_head.convs[0].conv.weight, src["auxiliary_head.convs.0.conv.weight"])
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model.predict(torch.rand(1, 3, 64, 64) * 255)).all()


def test_swin_key_conversion_round_trip(mmseg_swin_upernet):
    backbone = {k[len("backbone.") :]: v for k, v in mmseg_swin_upernet.items() if k.startswith("backbone.")}
    back = timm_swin_to_mmseg(mmseg_swin_to_timm(backbone))
    expected = {k: v for k, v in backbone.items() if not k.endswith("relative_position_index")}
    assert back.keys() == expected.keys()
    for key in expected:
        assert torch.equal(back[key], expected[key]), key
    # the PatchMerging weights really are permuted, not passed through
    timm_keys = mmseg_swin_to_timm(backbone)
    assert not torch.equal(
        timm_keys["model.layers.1.downsample.reduction.weight"], backbone["stages.0.downsample.reduction.weight"]
    )


def _mmseg_patch_merging(x, norm, reduction):
    """mmseg's PatchMerging: nn.Unfold(2, stride 2) channel order, then norm and reduction. x (B,H,W,C)."""
    cols = nn.functional.unfold(x.permute(0, 3, 1, 2), kernel_size=2, stride=2)  # (B, 4C, L)
    return reduction(norm(cols.transpose(1, 2)))  # (B, L, 2C)


def test_patch_merging_conversion_is_numerically_exact(mmseg_swin_upernet):
    model = _swin_model()
    model.load_state_dict(convert_mmseg_checkpoint(mmseg_swin_upernet), strict=True)
    c = EMBED
    norm = nn.LayerNorm(4 * c)
    reduction = nn.Linear(4 * c, 2 * c, bias=False)
    norm.weight.data = mmseg_swin_upernet["backbone.stages.0.downsample.norm.weight"]
    norm.bias.data = mmseg_swin_upernet["backbone.stages.0.downsample.norm.bias"]
    reduction.weight.data = mmseg_swin_upernet["backbone.stages.0.downsample.reduction.weight"]
    x = torch.randn(2, 8, 6, c)
    with torch.no_grad():
        want = _mmseg_patch_merging(x, norm, reduction).reshape(2, 4, 3, 2 * c)
        got = model.backbone.model.layers[1].downsample(x)
    assert torch.allclose(got, want, atol=1e-5)


def test_load_init_weights_reads_an_mmseg_checkpoint_file(mmseg_swin_upernet, tmp_path):
    path = tmp_path / "upernet_swin.pth"
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": mmseg_swin_upernet}, path)
    model = build_segmentor(ModelParams(backbone="swin_mini", channels=CH, aux_channels=AUX), 3, proj_dim=4)
    with pytest.raises(ValueError, match=r"upernet_swin.pth.*4 mis-shaped.*conv_seg.*model.load_exclude"):
        load_init_weights(model, path)  # 5-class classifiers into a 3-class model: only if listed
    report = load_init_weights(model, path, exclude=("decode_head.conv_seg.*", "auxiliary_head.conv_seg.*"))
    assert sorted(report.mismatched) == [
        "auxiliary_head.conv_seg.bias",
        "auxiliary_head.conv_seg.weight",
        "decode_head.conv_seg.bias",
        "decode_head.conv_seg.weight",
    ]
    assert not report.unexpected
    assert all(k.startswith(("projection.", "decode_head.conv_seg", "auxiliary_head.conv_seg")) for k in report.missing)


def mmseg_resnet50_v1c_backbone(g):
    """backbone.* of mmseg's ResNetV1c (depth 50): deep stem stem.0-7, then layer1-4 bottlenecks."""
    sd = {"stem.0.weight": _rand(g, 32, 3, 3, 3), **_bn("stem.1", 32, g), "stem.3.weight": _rand(g, 32, 32, 3, 3)}
    sd |= {**_bn("stem.4", 32, g), "stem.6.weight": _rand(g, 64, 32, 3, 3), **_bn("stem.7", 64, g)}
    inp = 64
    for li, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for b in range(blocks):
            p = f"layer{li}.{b}."
            sd |= {p + "conv1.weight": _rand(g, planes, inp, 1, 1), **_bn(p + "bn1", planes, g)}
            sd |= {p + "conv2.weight": _rand(g, planes, planes, 3, 3), **_bn(p + "bn2", planes, g)}
            sd |= {p + "conv3.weight": _rand(g, 4 * planes, planes, 1, 1), **_bn(p + "bn3", 4 * planes, g)}
            if b == 0:
                sd |= {
                    p + "downsample.0.weight": _rand(g, 4 * planes, inp, 1, 1),
                    **_bn(p + "downsample.1", 4 * planes, g),
                }
            inp = 4 * planes
    return sd


def test_mmseg_resnet50_v1c_keys_and_shapes_match():
    g = torch.Generator().manual_seed(1)
    sd = {f"backbone.{k}": v for k, v in mmseg_resnet50_v1c_backbone(g).items()}
    sd |= mmseg_heads([256, 512, 1024, 2048], g)
    converted = convert_mmseg_checkpoint({"state_dict": sd})
    model = build_segmentor(ModelParams(backbone="resnet50", channels=CH, aux_channels=AUX), K, device="meta")
    own = model.state_dict()
    assert converted.keys() == own.keys()
    assert all(converted[k].shape == own[k].shape for k in own)
    assert torch.equal(converted["backbone.model.bn1.weight"], sd["backbone.stem.7.weight"])


def test_unrecognised_backbone_is_an_error():
    with pytest.raises(ValueError, match="unrecognised backbone"):
        convert_mmseg_checkpoint({"backbone.blocks.0.weight": torch.zeros(1)})


class PickledConfig:
    """Stands for the objects (ConfigDict, HistoryBuffer) that full mmengine checkpoints pickle."""


def test_checkpoint_with_arbitrary_objects_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "full_ckpt.pth"
    torch.save({"meta": PickledConfig(), "state_dict": {}}, path)
    model = build_segmentor(ModelParams(backbone="resnet18", channels=CH, aux_channels=AUX), K)
    with pytest.raises(ValueError, match=r"(?s)full_ckpt.pth.*Unsupported global.*state_dict"):
        load_init_weights(model, path)
