"""Our encoders and UperNet against mmsegmentation 1.2.2's own models (built from the configs in its wheel).

Weights are seeded random draws (BN statistics and Swin position tables included), converted to our layout,
loaded strictly; backbone stages, decode logits and aux logits must agree to 1e-4 (float32) at window
multiples and at sizes that are not. Swin-L and ResNeSt-101 (~1 min each on 2 cores) are marked slow.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from _mmseg_fixtures import build_mmseg, config_path, max_diffs, mmseg_outputs, ours_outputs
from stcl.models import build_segmentor, convert_mmseg_checkpoint
from stcl.models.convert import to_mmseg_checkpoint
from stcl.models.swin import PadThenRollBlock, official_swin_to_timm
from stcl.models.loading import strict_load
from stcl.params import ModelParams
from stcl.presets import preset_params

SWIN_T = "swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py"
SWIN_L = "swin/swin-large-patch4-window12-in22k-384x384-pre_upernet_8xb2-160k_ade20k-512x512.py"
R50 = "upernet/upernet_r50_4xb4-80k_ade20k-512x512.py"
TOL = 1e-4


def _ours(backbone: str, num_classes: int = 150):
    return build_segmentor(ModelParams(backbone=backbone, channels=512, aux_channels=256), num_classes).eval()


def _pair(cfg: str, backbone: str, **overrides):
    mm = build_mmseg(cfg, num_classes=150, **overrides)
    ours = _ours(backbone)
    window = getattr(ours.backbone, "window_size", None)
    strict_load(ours, convert_mmseg_checkpoint(mm.state_dict(), window=window, source=cfg), cfg)
    return mm, ours


def _compare(mm, ours, size, batch=1, seed=0):
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    diffs = max_diffs(mmseg_outputs(mm, x), ours_outputs(ours, x))
    print(f"max|Δ| {size}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return diffs


@pytest.fixture(scope="module")
def swin_tiny():
    return _pair(SWIN_T, "swin_tiny_patch4_window7_224")


@pytest.fixture(scope="module")
def r50():
    return _pair(R50, "resnet50")


@pytest.mark.parametrize("size", [(224, 224), (128, 128), (200, 328), (97, 61)])
def test_swin_tiny_upernet_equals_mmseg(swin_tiny, size):
    mm, ours = swin_tiny
    diffs = _compare(mm, ours, size)
    assert max(diffs.values()) < TOL, diffs


def test_swin_tiny_sizes_really_exercise_padding(swin_tiny):
    """Guard: with timm's roll-then-pad order the same weights differ from mmseg at 200×328."""
    mm, ours = swin_tiny
    from timm.models.swin_transformer import SwinTransformerBlock

    blocks = [b for layer in ours.backbone.model.layers for b in layer.blocks]
    for b in blocks:
        b.__class__ = SwinTransformerBlock
    try:
        diffs = _compare(mm, ours, (200, 328))
    finally:
        for b in blocks:
            b.__class__ = PadThenRollBlock
    assert diffs["logits"] > 1e-3


def test_swin_tiny_parameter_count_equals_mmseg(swin_tiny):
    mm, ours = swin_tiny
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in mm.parameters()) == 59_941_862


@pytest.mark.parametrize("size", [(224, 224), (128, 128), (200, 328)])
def test_upernet_r50_v1c_equals_mmseg(r50, size):
    mm, ours = r50
    diffs = _compare(mm, ours, size, batch=2)
    assert max(diffs.values()) < TOL, diffs
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in mm.parameters())


@pytest.mark.parametrize(("fixture", "cfg"), [("swin_tiny", SWIN_T), ("r50", R50)])
def test_round_trip_to_mmseg_gives_the_same_logits(request, fixture, cfg):
    """stcl → mmseg layout → a fresh mmseg model (loaded strictly) computes our logits."""
    _, ours = request.getfixturevalue(fixture)
    fresh = build_mmseg(cfg, num_classes=150, seed=99)
    window = getattr(ours.backbone, "window_size", None)
    fresh.load_state_dict(to_mmseg_checkpoint(ours.state_dict(), window=window), strict=True)
    diffs = _compare(fresh, ours, (200, 328), seed=3)
    assert max(diffs.values()) < TOL, diffs


def test_swin_window_mismatch_is_refused_with_the_window(swin_tiny, tmp_path):
    """A window-7 mmseg checkpoint does not load into the window-12 Swin (no silent resize or skip)."""
    mm, _ = swin_tiny
    path = tmp_path / "upernet_swin_t.pth"
    torch.save({"state_dict": mm.state_dict(), "meta": {"mmseg_version": "1.2.2"}}, path)
    params = ModelParams(backbone="swin_base_patch4_window12_384", channels=512, aux_channels=256, pretrained=path)
    with pytest.raises(ValueError, match=r"upernet_swin_t.pth.*(window is 7|7×7 window)"):
        build_segmentor(params, 150)


def _swin2mmseg():
    """mmseg's own converter from the official Swin release to its layout (tools/model_converters)."""
    path = config_path("../tools/model_converters/swin2mmseg.py")
    spec = importlib.util.spec_from_file_location("swin2mmseg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.convert_swin


def _official_from_mmseg(backbone: dict[str, torch.Tensor], classes: int) -> dict[str, torch.Tensor]:
    """The official release layout (``layers``, PatchMerging in stage N, ``head``, index buffers), built by
    inverting mmseg's converter (index buffers included); the test checks the converter maps it back exactly."""
    out = {}
    for key, value in backbone.items():
        if key.startswith("norm") and key[4].isdigit():
            continue  # mmseg's per-stage output norms are not in the classification release
        new = key.replace("stages", "layers", 1).replace("patch_embed.projection", "patch_embed.proj")
        new = (
            new.replace("attn.w_msa.", "attn.")
            .replace("ffn.layers.0.0.", "mlp.fc1.")
            .replace("ffn.layers.1.", "mlp.fc2.")
        )
        if ".downsample." in key:
            value = _unfold_inverse(value)
        out[new] = value
    last = backbone["norm3.weight"].shape[0]
    out |= {"norm.weight": torch.ones(last), "norm.bias": torch.zeros(last)}
    out |= {"head.weight": torch.zeros(classes, last), "head.bias": torch.zeros(classes)}
    return out


def _unfold_inverse(x: torch.Tensor) -> torch.Tensor:
    """Inverse of mmseg's ``correct_unfold_*_order`` (official (kw, kh, c) order ← nn.Unfold order)."""
    from stcl.models.swin import _unfold_to_timm_order

    return _unfold_to_timm_order(x)


@pytest.mark.slow
def test_swin_large_upernet_equals_mmseg_and_every_format_loads_into_the_paper_preset(tmp_path):
    """Swin-L (window 12, the paper's encoder): equivalence, parameter count, formats (a)-(c)."""
    mm, ours = _pair(SWIN_L, "swin_large_patch4_window12_384")
    n_mm = sum(p.numel() for p in mm.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n_mm == 233_962_976
    for size in [(384, 384), (128, 128), (200, 328)]:
        diffs = _compare(mm, ours, size)
        assert max(diffs.values()) < TOL, (size, diffs)
    del ours

    paper = preset_params("paper")
    num_classes = 124
    backbone = {k[len("backbone.") :]: v for k, v in mm.state_dict().items() if k.startswith("backbone.")}
    want = backbone
    ref = {
        k[len("backbone.") :]: v
        for k, v in convert_mmseg_checkpoint(mm.state_dict()).items()
        if k.startswith("backbone.")
    }

    def loads_exactly(path: Path, fmt: str, exclude: tuple[str, ...] = ()) -> None:
        """`path` loads into the paper preset's model, every trunk tensor the reference's, bit for bit."""
        params = paper.model.model_copy(update={"pretrained": path, "load_exclude": exclude})
        model = build_segmentor(params, num_classes, proj_dim=paper.train_stcl.stcl.dim)
        record = model.loaded_from[-1]
        assert record["source"] == str(path) and record["loaded"] > 0 and not record["unexpected"]
        assert record["format"] == fmt
        trunk = model.backbone.state_dict()
        for key, value in ref.items():
            if key.startswith("model.") or fmt == "mmseg":
                assert torch.equal(trunk[key], value), (path.name, key)
        if fmt == "mmseg":
            assert sorted(record["mismatched"]) == [
                "auxiliary_head.conv_seg.bias",
                "auxiliary_head.conv_seg.weight",
                "decode_head.conv_seg.bias",
                "decode_head.conv_seg.weight",
            ]
        else:  # the release files have no per-stage output norms: mmseg adds them
            assert {k.split(".")[1] for k in record["missing"] if k.startswith("backbone.")} == {
                "norm0",
                "norm1",
                "norm2",
                "norm3",
            }

    # Each file (about 0.9 GB) is written, loaded and deleted before the next: the suite's disk use stays small.
    # (a) official release: {"model": ...}, 21,841-class head; mmseg's converter maps it back exactly.
    official = _official_from_mmseg(backbone, 21841)
    converted = _swin2mmseg()(official)
    for key, value in want.items():
        if not (key.startswith("norm") and key[4].isdigit()):
            assert torch.equal(converted[key], value), key
    del converted
    path_a = tmp_path / "swin_large_patch4_window12_384_22k.pth"
    torch.save({"model": official}, path_a)
    loads_exactly(path_a, "swin-official")
    path_a.unlink()

    # (b) timm weights (.safetensors), made from (a) by timm's own checkpoint filter.
    from safetensors.torch import save_file
    from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn

    with torch.device("meta"):
        timm_model = SwinTransformer(
            img_size=384,
            embed_dim=192,
            depths=(2, 2, 18, 2),
            num_heads=(6, 12, 24, 48),
            window_size=12,
            num_classes=21841,
        )
    timm_state = checkpoint_filter_fn(dict(official), timm_model)
    assert "layers.1.downsample.reduction.weight" in timm_state and "head.fc.weight" in timm_state
    path_b = tmp_path / "swin_large_patch4_window12_384.ms_in22k.safetensors"
    save_file({k: v.contiguous() for k, v in timm_state.items()}, str(path_b))
    del official, timm_state
    loads_exactly(path_b, "swin-timm")
    path_b.unlink()

    # (c) mmseg model zoo: {"state_dict", "meta"}, 150 classes → the 124-class model leaves conv_seg out.
    path_c = tmp_path / "upernet_swin_large_ade20k.pth"
    torch.save({"meta": {"mmseg_version": "1.2.2", "CLASSES": ["a"] * 150}, "state_dict": mm.state_dict()}, path_c)
    del mm
    loads_exactly(path_c, "mmseg", ("decode_head.conv_seg.*", "auxiliary_head.conv_seg.*"))

    with pytest.raises(ValueError, match=r"upernet_swin_large_ade20k.pth.*mis-shaped.*conv_seg"):
        build_segmentor(paper.model.model_copy(update={"pretrained": path_c}), num_classes)


@pytest.mark.slow
def test_resnest101_backbone_equals_mmseg_resnest():
    """timm's resnest101e = mmseg's ResNeSt (depth 101, stem 128, radix 2, reduction 4, avg_down_stride)."""
    mm, ours = _pair(
        R50,
        "resnest101e",
        type="ResNeSt",
        depth=101,
        stem_channels=128,
        radix=2,
        reduction_factor=4,
        avg_down_stride=True,
    )
    assert sum(p.numel() for p in ours.backbone.parameters()) == sum(p.numel() for p in mm.backbone.parameters())
    for size in [(224, 224), (200, 328)]:
        diffs = _compare(mm, ours, size, batch=2)
        assert max(diffs.values()) < TOL, (size, diffs)
