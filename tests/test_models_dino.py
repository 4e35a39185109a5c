"""DINOv2 / DINOv3 encoders in this project: `stcl weights` on their release layouts, one-line refusals, and
the segmentor paths (crop, sliding window, STCL projection) with patch 14 and 16 at sizes not a multiple.

The official-layout files are the official state dicts of tests/data/make_dino_reference.py (shapes and
buffers from the official code, seeded weights); see tests/test_models_dino_official.py for equality.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from stcl.cli import main
from stcl.models import build_segmentor
from stcl.models.dino import build_dino
from stcl.models.loading import load_encoder_weights
from stcl.params import ModelParams, Params, StclParams

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def official():
    spec = importlib.util.spec_from_file_location("make_dino_reference", DATA / "make_dino_reference.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    ref = torch.load(DATA / "dino_official_reference.pt", weights_only=True)

    def state(name: str) -> dict[str, torch.Tensor]:
        entry = ref["models"][name]
        shapes = {k: torch.Size(v) for k, v in entry["shapes"].items()}
        return maker.seeded_state(shapes, skip=set(entry["buffers"])) | dict(entry["buffers"])

    return state


def _params(tmp_path, **model):
    data = Params().model_dump(mode="json")
    data["model"].update(model)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("name", "backbone", "fmt"),
    [("dinov2", "dinov2_tiny", "dinov2-official"), ("dinov3", "dinov3_tiny", "dinov3-official")],
)
def test_weights_command_recognises_official_releases(tmp_path, capsys, official, name, backbone, fmt):
    path = tmp_path / f"{name}_pretrain.pth"
    torch.save(official(name), path)
    params = _params(tmp_path, backbone=backbone, channels=8, aux_channels=8)
    assert main(["weights", str(path), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert f"format:   {fmt}" in out
    fits = out.split("fits:")[1].splitlines()[0]
    assert backbone in fits and "vitl" not in fits and "swin" not in fits
    assert "loads strictly" in out and "mask_token: pretraining only" in out


def test_reg4_file_is_refused_by_the_plain_model_in_one_line(tmp_path, official):
    path = tmp_path / "reg4.pth"
    torch.save(official("dinov2_reg4"), path)
    with pytest.raises(ValueError) as err:
        load_encoder_weights(build_dino("dinov2_tiny"), path)
    msg = str(err.value)
    assert "\n" not in msg and "reg4.pth" in msg and "registers 4" in msg and "registers 0" in msg


def test_other_patch_size_or_width_is_refused_in_one_line(tmp_path, official, capsys):
    state = official("dinov2")
    state["patch_embed.proj.weight"] = torch.zeros(32, 3, 16, 16)
    path = tmp_path / "p16.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"p16\.pth: a dinov2 ViT with patch 16, width 32.*patch 14, width 32"):
        load_encoder_weights(build_dino("dinov2_tiny"), path)
    good = tmp_path / "tiny.pth"
    torch.save(official("dinov2"), good)
    params = _params(tmp_path, backbone="dinov2_vitl14", channels=8, aux_channels=8)
    assert main(["weights", str(good), "--params", str(params)]) == 1
    out = capsys.readouterr().out
    assert "does NOT load" in out and "width 32" in out and "width 1024" in out


def test_family_mismatch_is_refused(tmp_path, official):
    path = tmp_path / "v2.pth"
    torch.save(official("dinov2"), path)
    with pytest.raises(ValueError, match="holds a dinov2 backbone"):
        load_encoder_weights(build_dino("dinov3_tiny"), path)


def test_dinov3_bias_mask_other_than_1_0_1_is_refused(tmp_path, official):
    state = official("dinov3")
    state["blocks.0.attn.qkv.bias_mask"] = torch.ones(96)
    path = tmp_path / "mask.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"qkv\.bias_mask is not \[1 \(q\), 0 \(k\), 1 \(v\)\]"):
        load_encoder_weights(build_dino("dinov3_tiny"), path)


def test_dinov2_position_table_of_another_grid_is_resized_and_named(tmp_path, official):
    """A file pretrained at another size (here: the 8×8 table resized to 6×6) still loads; the report says so."""
    from stcl.models.dino_files import official_dinov2_pos_embed

    state = official("dinov2")
    pos = state["pos_embed"]
    state["pos_embed"] = torch.cat(
        [pos[:, :1], official_dinov2_pos_embed(pos[:, 1:], (6, 6), offset=0.1, antialias=False)], dim=1
    )
    path = tmp_path / "grid6.pth"
    torch.save(state, path)
    report = load_encoder_weights(build_dino("dinov2_tiny"), path)
    assert any("pos_embed (6×6)" in k for k in report.dropped)


@pytest.mark.parametrize("backbone", ["dinov2_tiny", "dinov3_tiny"])
def test_segmentor_crop_projection_and_sliding_window_any_size(backbone):
    """Patch 14 and 16 at sizes that are not a multiple: training clip (STCL projection on every frame), the
    loss, and the sliding window over a frame larger than its crop (windows not a patch multiple)."""
    from stcl.infer.sliding import Window, slide_logits
    from stcl.losses.segmentation import segmentor_loss

    torch.manual_seed(0)
    model = build_segmentor(ModelParams(backbone=backbone, channels=16, aux_channels=8), 5, proj_dim=8)
    clip = torch.rand(2, 2, 3, 50, 70) * 255
    out = model(clip)
    p = model.backbone.patch
    assert out.logits.shape[-2:] == (-(-50 * 4 // p), -(-70 * 4 // p))
    assert out.proj.shape[:3] == (2, 2, 8)
    assert out.proj.shape[-2:] == model.backbone(model.normalize(clip[:, 0]))[-1].shape[-2:]  # the encoder's last map
    labels = torch.randint(0, 5, (2, 2, 50, 70))
    total, parts = segmentor_loss(out, labels, 0.4, StclParams(dim=8))
    total.backward()
    assert parts["stcl"] > 0 and model.backbone.model.blocks[0].norm1.weight.grad is not None
    model.eval()
    logits = slide_logits(model.predict, torch.rand(1, 3, 61, 83) * 255, Window((45, 45), (30, 30)))
    assert logits.shape == (1, 5, 61, 83) and torch.isfinite(logits).all()


def test_layer_ids_follow_mmseg_vit_rule():
    enc = build_dino("dinov2_tiny")
    assert enc.layer_id("model.cls_token") == 0 and enc.layer_id("model.patch_embed.proj.weight") == 0
    assert enc.layer_id("model.blocks.0.attn.qkv.weight") == 1 and enc.layer_id("model.blocks.3.mlp.fc2.bias") == 4
    assert enc.layer_id("model.norm.weight") == 5 and enc.layer_id("neck.upsample_4x.0.weight") == 5


def test_grad_checkpointing_computes_the_same():
    torch.manual_seed(0)
    enc = build_dino("dinov3_tiny", drop_path=0.0).train()
    x = torch.randn(2, 3, 64, 48)
    ref = enc(x)
    enc.set_grad_checkpointing(True)
    got = enc(x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ref, got))


def test_neck_equals_mmseg_feature2pyramid():
    """Our neck against mmseg 1.2.2's own Feature2Pyramid (rescales 4, 2, 1, 0.5; BN): its state dict loads
    strictly into ours (same names) and the four maps are equal, at an even and an odd token grid."""
    from _mmseg_fixtures import stub_mmcv_ops

    from stcl.models.dino import SimpleFeaturePyramid

    stub_mmcv_ops()
    from mmseg.models.necks import Feature2Pyramid

    torch.manual_seed(0)
    theirs = Feature2Pyramid(16, rescales=[4, 2, 1, 0.5], norm_cfg=dict(type="BN", requires_grad=True))
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_()
        bn = theirs.upsample_4x[1]
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2.0)
    ours = SimpleFeaturePyramid(16)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for mode in ("train", "eval"):
        getattr(theirs, mode)(), getattr(ours, mode)()
        for h, w in ((6, 8), (7, 9)):
            xs = [torch.randn(2, 16, h, w) for _ in range(4)]
            for a, b in zip(ours(xs), theirs(xs), strict=True):
                assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)


def test_predict_accepts_a_dino_model(tmp_path, capsys):
    """`stcl predict` on a frame folder with a dinov3_tiny model file (patch 16; 50×70 frames are padded)."""
    from PIL import Image

    from stcl.data.classes import VSPW_CLASSES
    from stcl.models import save_model

    torch.manual_seed(0)
    params = ModelParams(backbone="dinov3_tiny", channels=16, aux_channels=8)
    model = build_segmentor(params, len(VSPW_CLASSES), load_pretrained=False)
    path = save_model(tmp_path / "m.pt", model, model_params=params, num_classes=len(VSPW_CLASSES), proj_dim=None,
                      label_space="vspw", class_names=VSPW_CLASSES)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray((torch.rand(50, 70, 3) * 255).byte().numpy()).save(frames / f"{i:05d}.png")
    out = tmp_path / "out"
    assert main(["predict", str(frames), "--model", str(path), "--out", str(out), "--scales", "1.0", "--no-flip",
                 "--crop-size", "40", "40", "--stride", "30", "30", "--device", "cpu"]) == 0
    labels = sorted((out / "labels").glob("*.png"))
    assert len(labels) == 2 and Image.open(labels[0]).size == (70, 50)


def test_weights_command_recognises_the_hugging_face_layout(tmp_path, capsys):
    params = _params(tmp_path, backbone="dinov3_tiny", channels=8, aux_channels=8)
    assert main(["weights", str(DATA / "dinov3_tiny_hf.safetensors"), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "format:   dinov3-hf" in out and "loads strictly" in out and "embeddings.mask_token" in out


def test_out_indices_are_configurable_and_checked():
    model = build_segmentor(ModelParams(backbone="dinov2_tiny", channels=8, aux_channels=8, out_indices=(0, 0, 1, 3)), 3)
    assert model.backbone.out_indices == (0, 0, 1, 3)
    assert build_dino("dinov2_vitl14", device="meta").out_indices == (5, 11, 17, 23)
    with pytest.raises(ValueError, match=r"out_indices: need four block indices in \[0, 4\)"):
        build_dino("dinov2_tiny", out_indices=(0, 1, 2, 9), device="meta")
    # from params.yaml, out of range or on a non-ViT backbone is refused by validation (tests/test_params.py)
    with pytest.raises(ValueError, match=r"dinov2_tiny has 4 blocks"):
        ModelParams(backbone="dinov2_tiny", out_indices=(0, 1, 2, 9))
    with pytest.raises(ValueError, match=r"applies to the ViT backbones"):
        ModelParams(backbone="resnet18", out_indices=(0, 1, 2, 3))


@pytest.mark.parametrize("backbone", ["dinov2_tiny", "dinov3_tiny", "resnet18"])
@pytest.mark.parametrize("size", [(10, 13), (5, 30), (1, 1)])
def test_views_smaller_than_two_patches_train_and_predict(backbone, size):
    """A training crop of 10×13 and the tiny views of small scales: padded to two patches (the ×½ level pools
    2×2 tokens), logits of the view's own size, finite gradients; ResNet beside them as the reference."""
    from stcl.losses.segmentation import segmentor_loss

    torch.manual_seed(0)
    model = build_segmentor(ModelParams(backbone=backbone, channels=16, aux_channels=8), 5, proj_dim=8)
    h, w = size
    out = model(torch.rand(2, 2, 3, h, w) * 255)
    total, _ = segmentor_loss(out, torch.randint(0, 5, (2, 2, h, w)), 0.4, StclParams(dim=8))
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        logits = model.predict(torch.rand(1, 3, h, w) * 255)
    assert logits.shape == (1, 5, h, w) and torch.isfinite(logits).all()


def test_predict_at_a_quarter_scale_of_small_frames_with_a_dino_model(tmp_path):
    """`stcl predict --scales 0.25` on 50×40 frames: the 12×10 view is smaller than one 16-pixel patch."""
    from PIL import Image

    from stcl.data.classes import VSPW_CLASSES
    from stcl.models import save_model

    torch.manual_seed(0)
    params = ModelParams(backbone="dinov3_tiny", channels=16, aux_channels=8)
    model = build_segmentor(params, len(VSPW_CLASSES), load_pretrained=False)
    path = save_model(tmp_path / "m.pt", model, model_params=params, num_classes=len(VSPW_CLASSES), proj_dim=None,
                      label_space="vspw", class_names=VSPW_CLASSES)
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray((torch.rand(40, 50, 3) * 255).byte().numpy()).save(frames / "00000.png")
    out = tmp_path / "out"
    assert main(["predict", str(frames), "--model", str(path), "--out", str(out), "--scales", "0.25", "0.5",
                 "--device", "cpu"]) == 0
    assert Image.open(out / "labels" / "00000000.png").size == (50, 40)
