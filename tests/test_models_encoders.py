"""Every encoder of the family table: output channels, strides and (for the small ones) finite forward/backward.

Large encoders run on the meta device (shapes only, no memory, no compute); small ones run for real.
"""

from __future__ import annotations

import pytest
import torch

from stcl.families import BACKBONES
from stcl.models import build_encoder, build_segmentor
from stcl.models.cswin import build_cswin, convert_cswin_checkpoint
from stcl.models.loading import load_encoder_weights
from stcl.params import ModelParams

SMALL = ("resnet18", "swin_mini", "cswin_mini", "dinov2_tiny", "dinov3_tiny")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_shapes_and_strides_on_meta(name):
    enc = build_encoder(name, device="meta")
    outs = enc(torch.empty(2, 3, 224, 448, device="meta"))  # a multiple of 32 and of 4·14
    assert len(outs) == 4
    # ViTs with patch p: strides p/4, p/2, p, 2p (3.5 … 28 for patch 14); all others 4, 8, 16, 32
    p = getattr(enc, "patch", 16)
    assert enc.strides == (p / 4, p / 2, p, 2 * p)
    for out, ch, stride in zip(outs, enc.out_channels, enc.strides):
        assert out.shape == (2, ch, int(224 / stride), int(448 / stride))


@pytest.mark.parametrize("name", SMALL)
def test_small_encoders_forward_backward_finite(name):
    torch.manual_seed(0)
    enc = build_encoder(name, drop_path=0.1)
    x = torch.randn(2, 3, 224, 224, requires_grad=True)
    outs = enc(x)
    want = [(2, c, int(224 / s), int(224 / s)) for c, s in zip(enc.out_channels, enc.strides)]
    assert [tuple(o.shape) for o in outs] == want
    assert all(torch.isfinite(o).all() for o in outs)
    sum(o.square().mean() for o in outs).backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ("swin_mini", "cswin_mini"))
@pytest.mark.parametrize("size", [(33, 47), (70, 90)])
def test_transformers_take_sizes_that_are_not_window_multiples(name, size):
    enc = build_encoder(name).eval()
    with torch.no_grad():
        outs = enc(torch.randn(1, 3, *size))
    assert all(torch.isfinite(o).all() for o in outs)
    if name.startswith("cswin"):  # the official CSWin stem: 7×7 stride-4 conv, padding 2, rounding down
        assert outs[0].shape[2:] == ((size[0] - 3) // 4 + 1, (size[1] - 3) // 4 + 1)
    else:  # mmseg's Swin pads the input to whole patches (AdaptivePadding "corner")
        assert outs[0].shape[2:] == (-(-size[0] // 4), -(-size[1] // 4))


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(ValueError, match="valid: .*swin_large_patch4_window12_384.*resnet50.*resnest101e"):
        build_encoder("vit_huge")


def test_pretrained_sources_are_exclusive(tmp_path):
    """Checked once, by params (`ModelParams`): build_encoder receives validated params."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pick one source"):
        ModelParams(backbone="resnet18", pretrained=tmp_path / "w.pt", pretrained_from_hub=True)


def test_missing_pretrained_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build_encoder("resnet18", pretrained=tmp_path / "absent.pth")


def test_resnet50_is_the_deep_stem_v1c():
    enc = build_encoder("resnet50", device="meta")
    stem = enc.model.conv1  # three 3×3 convs 3→32→32→64, as mmseg's ResNetV1c
    assert [m.weight.shape[:2] for m in stem if isinstance(m, torch.nn.Conv2d)] == [(32, 3), (32, 32), (64, 32)]


def test_swin_has_mmseg_style_output_norms():
    enc = build_encoder("swin_large_patch4_window12_384", device="meta")
    assert [getattr(enc, f"norm{i}").normalized_shape[0] for i in range(4)] == [192, 384, 768, 1536]


def test_timm_checkpoint_loads_from_local_file(tmp_path):
    src = build_encoder("resnet18")
    path = tmp_path / "resnet18.pth"
    state = dict(src.model.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # classifier of a timm checkpoint: dropped
    torch.save(state, path)
    enc = build_encoder("resnet18", pretrained=path)
    assert torch.equal(enc.model.layer3[1].conv2.weight, src.model.layer3[1].conv2.weight)


def test_official_swin_release_format_loads(tmp_path):
    """{'model': ...} with PatchMerging at the end of each stage (official release) → timm layout."""
    src = build_encoder("swin_mini")
    official = {}
    for key, value in src.model.state_dict().items():
        if ".downsample." in key:  # timm: layers.N+1.downsample ↔ official: layers.N.downsample
            n = int(key.split(".")[1])
            key = key.replace(f"layers.{n}.downsample", f"layers.{n - 1}.downsample")
        official[key] = value
    official["head.weight"] = torch.zeros(10, 256)
    path = tmp_path / "swin_official.pth"
    torch.save({"model": official}, path)
    enc = build_encoder("swin_mini", pretrained=path)
    for key, value in src.model.state_dict().items():
        assert torch.equal(enc.model.state_dict()[key], value), key


def test_cswin_official_checkpoint_loads_by_name(tmp_path):
    src = build_cswin("mini")
    official = {k: v for k, v in src.state_dict().items() if not k.startswith(("norm1.", "norm2.", "norm3.", "norm4."))}
    official |= {"norm.weight": torch.ones(256), "head.weight": torch.zeros(10, 256), "head.bias": torch.zeros(10)}
    enc = build_cswin("mini")
    path = tmp_path / "cswin.pth"
    torch.save({"state_dict_ema": official}, path)
    report = load_encoder_weights(enc, path)
    assert not report.unexpected and not report.mismatched
    assert sorted(report.missing) == sorted(f"backbone.norm{i}.{p}" for i in range(1, 5) for p in ("weight", "bias"))
    assert torch.equal(enc.stage3[1].attns[1].get_v.weight, src.stage3[1].attns[1].get_v.weight)
    assert "head.weight" not in convert_cswin_checkpoint(official)


def test_cswin_large_structure_and_parameter_count():
    enc = build_encoder("cswin_large", device="meta")
    assert enc.out_channels == (144, 288, 576, 1152)
    assert [len(getattr(enc, f"stage{i}")) for i in range(1, 5)] == [2, 4, 32, 2]
    assert len(enc.stage3[0].attns) == 2 and len(enc.stage4[0].attns) == 1
    # Official CSWin-L classifier: 173M = trunk + final norm + 1000-class head, without our output norms.
    out_norms = sum(2 * c for c in enc.out_channels)
    n = sum(p.numel() for p in enc.parameters()) - out_norms + 2 * 1152 + 1152 * 1000 + 1000
    assert n == pytest.approx(173e6, rel=0.01)


@pytest.mark.parametrize(
    ("backbone", "expected"),
    [("swin_large_patch4_window12_384", 234e6), ("cswin_large", 208e6)],
)
def test_upernet_parameter_count_self_check(backbone, expected):
    """UperNet Swin-L (150 classes) ≈ 234M (Swin README); UperNet CSWin-L ≈ 208M (CSWin paper)."""
    params = ModelParams(backbone=backbone, channels=512, aux_channels=256)
    model = build_segmentor(params, num_classes=150, device="meta")
    n = sum(p.numel() for p in model.parameters())
    assert n == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("name", SMALL)
def test_grad_checkpointing_gives_the_same_gradients(name):
    torch.manual_seed(0)
    plain = build_encoder(name)
    ckpt = build_encoder(name, grad_checkpointing=True)
    flags = [m.grad_checkpointing for m in ckpt.modules() if hasattr(m, "grad_checkpointing")]
    assert flags and all(flags)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for enc in (plain, ckpt):
        sum(o.square().mean() for o in enc(x)).backward()
        grads.append([p.grad.clone() for p in enc.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_nothing_downloads_unless_hub_is_opted_in(monkeypatch):
    import timm

    calls = []
    real = timm.create_model

    def spy(name, pretrained=False, **kwargs):
        calls.append((name, pretrained))
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    build_segmentor(ModelParams(backbone="resnet18", channels=8, aux_channels=8), 3)
    build_encoder("resnet18", pretrained_from_hub=True)
    assert calls == [("resnet18", False), ("resnet18", True)]


def test_load_report_names_missing_and_unexpected_keys(tmp_path):
    """Strict: a partial file with a stray key is an error naming the file, the missing and the unexpected keys."""
    src = build_encoder("resnet18")
    state = {k: v for k, v in src.model.state_dict().items() if not k.startswith("layer4.")}
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": state}, path)
    enc = build_encoder("resnet18")
    with pytest.raises(
        ValueError, match=r"partial.pth.*missing \[backbone.model.layer4\..*unexpected \[model.extra.weight\]"
    ):
        load_encoder_weights(enc, path)
    with pytest.raises(ValueError, match=r"partial.pth.*missing.*layer4.*unexpected.*extra.weight"):
        build_encoder("resnet18", pretrained=path)
    report = load_encoder_weights(enc, path, exclude=("backbone.model.layer4.*", "*extra*"))
    assert "model.extra.weight" in report.unexpected and any(
        k.startswith("backbone.model.layer4.") for k in report.missing
    )
    assert "partial.pth" in str(report) and "left at init" in str(report) and "not used" in str(report)


def test_upernet_swin_large_has_mmseg_parameter_count_exactly():
    """233,962,976 = mmseg 1.2.2's UperNet Swin-L (window 12 at every stage: 23² position-table rows in stage 4;
    counted from its own model in tests/test_models_mmseg_equivalence.py)."""
    params = ModelParams(backbone="swin_large_patch4_window12_384", channels=512, aux_channels=256)
    model = build_segmentor(params, num_classes=150, device="meta")
    assert sum(p.numel() for p in model.parameters()) == 233_962_976
    table = model.backbone.model.layers[3].blocks[0].attn.relative_position_bias_table
    assert tuple(table.shape) == (529, 48)
