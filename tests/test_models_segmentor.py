"""Segmentor contract (shapes, normalisation, predict), segmentor_loss, and model files."""

from __future__ import annotations

import pytest
import torch

from stcl.losses import segmentor_loss
from stcl.models import build_segmentor, load_init_weights, load_model, read_model_file, save_model
from stcl.params import ModelParams, StclParams

TINY = ModelParams(backbone="resnet18", channels=16, aux_channels=8)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_segmentor(TINY, num_classes=5, proj_dim=8)


def test_forward_shapes_and_unit_projection(model):
    out = model(torch.rand(2, 3, 3, 64, 96) * 255)
    assert out.logits.shape == (2, 5, 16, 24)
    assert out.aux_logits.shape == (2, 5, 4, 6)
    assert out.proj.shape == (2, 3, 8, 2, 3)  # the encoder's last stage, stride 32 (the default)
    norms = out.proj.norm(dim=2)
    assert torch.allclose(norms[norms > 0], torch.ones_like(norms[norms > 0]), atol=1e-5)


def test_query_logits_do_not_depend_on_reference_frames(model):
    model.eval()
    clip = torch.rand(1, 3, 3, 64, 64) * 255
    other = clip.clone()
    other[:, 1:] = torch.rand(1, 2, 3, 64, 64) * 255
    with torch.no_grad():
        a, b = model(clip), model(other)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert not torch.allclose(a.proj[:, 1], b.proj[:, 1])
    model.train()


def test_predict_full_resolution_and_normalises_inside(model):
    model.eval()
    img = torch.rand(1, 3, 50, 70) * 255
    with torch.no_grad():
        logits = model.predict(img)
        manual = model.decode_head(model.backbone((img - model.pixel_mean) / model.pixel_std))
    assert logits.shape == (1, 5, 50, 70)
    up = torch.nn.functional.interpolate(manual, size=(50, 70), mode="bilinear", align_corners=False)
    assert torch.allclose(logits, up, atol=1e-5)
    model.train()


def test_projection_inputs_and_their_strides():
    from stcl.presets import PRESETS, preset_params

    for preset in PRESETS:  # paper 2.2: the encoder's feature maps, in the default and every preset
        assert preset_params(preset).model.projection_input == "backbone_last", preset
    for name, stride in (("backbone_last", 32), ("fpn_bottleneck", 4)):
        m = build_segmentor(TINY.model_copy(update={"projection_input": name}), num_classes=3, proj_dim=4)
        out = m(torch.rand(2, 2, 3, 64, 64) * 255)
        assert out.proj.shape == (2, 2, 4, 64 // stride, 64 // stride) and out.logits.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("projection_input", ["backbone_last", "fpn_bottleneck"])
def test_stcl_gradient_reaches_the_encoder_or_the_decoder_as_named(projection_input):
    """Only STCL backpropagated: with backbone_last (the paper: "the encoded features are transformed by the
    projection head") the gradient reaches the encoder and no decoder weight; with fpn_bottleneck it passes
    through the decoder's fused map."""
    from stcl.losses import spatial_temporal_consistency_loss

    torch.manual_seed(0)
    params = TINY.model_copy(update={"projection_input": projection_input})
    m = build_segmentor(params, num_classes=3, proj_dim=4)
    out = m(torch.rand(2, 3, 3, 64, 64) * 255)
    labels = torch.zeros(2, 3, 64, 64, dtype=torch.long)
    labels[..., 32:] = 1  # two classes in every frame: every anchor has positives at any stride
    loss = spatial_temporal_consistency_loss(out.proj[:, 0], labels[:, 0], out.proj[:, 1:], labels[:, 1:])
    loss.backward()
    assert loss.item() > 0

    def reached(module: torch.nn.Module) -> float:
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    assert reached(m.backbone) > 0 and reached(m.projection) > 0
    assert reached(m.auxiliary_head) == 0
    if projection_input == "backbone_last":
        assert reached(m.decode_head) == 0
    else:
        assert reached(m.decode_head.fpn_bottleneck) > 0 and reached(m.decode_head.conv_seg) == 0


def test_no_projection_head_computes_query_only():
    m = build_segmentor(TINY, num_classes=3, proj_dim=None)
    out = m(torch.rand(2, 2, 3, 32, 32) * 255)
    assert out.proj is None and out.logits.shape == (2, 3, 8, 8)


def test_bad_input_shape_names_the_argument(model):
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="images"):
        model.predict(torch.rand(2, 1, 3, 32, 32))


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="resnet18.*swin_large_patch4_window12_384|swin_large.*resnet18"):
        build_segmentor(ModelParams(backbone="nope"), 3)


def test_segmentor_loss_parts_and_gradients(model):
    out = model(torch.rand(2, 3, 3, 32, 32) * 255)
    labels = torch.randint(0, 5, (2, 3, 32, 32))
    labels[:, :, :4] = 255
    total, parts = segmentor_loss(out, labels, 0.4, StclParams(dim=8, weight=0.2))
    assert set(parts) == {"ce", "aux", "stcl", "total"}
    assert parts["total"] == pytest.approx(parts["ce"] + 0.4 * parts["aux"] + 0.2 * parts["stcl"], rel=1e-5)
    total.backward()
    assert model.projection.fc.weight.grad is not None and model.decode_head.conv_seg.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_segmentor_loss_all_ignored_is_zero_with_graph(model):
    out = model(torch.rand(2, 2, 3, 32, 32) * 255)
    total, parts = segmentor_loss(out, torch.full((2, 2, 32, 32), 255), 0.4, StclParams(dim=8))
    assert parts["total"] == 0.0 and total.requires_grad
    total.backward()
    model.zero_grad()


def test_segmentor_loss_without_stcl_and_missing_projection():
    m = build_segmentor(TINY, num_classes=3)
    out = m(torch.rand(2, 1, 3, 32, 32) * 255)  # PPM's 1×1 BatchNorm needs >= 2 images in train mode
    labels = torch.randint(0, 3, (2, 1, 32, 32))
    _, parts = segmentor_loss(out, labels, 0.4, None)
    assert "stcl" not in parts
    with pytest.raises(ValueError, match="proj_dim"):
        segmentor_loss(out, labels, 0.4, StclParams())


def _save(model, path, num_classes=5, proj_dim=8):
    return save_model(
        path,
        model,
        model_params=TINY,
        num_classes=num_classes,
        proj_dim=proj_dim,
        label_space="vspw",
        class_names=[f"c{i}" for i in range(num_classes)],
        extra={"iters": 3},
    )


def test_save_load_round_trip_weights_only(model, tmp_path):
    path = _save(model, tmp_path / "sub" / "model.pt")
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "stcl-model/1" and raw["extra"] == {"iters": 3}
    assert raw["model_params"]["backbone"] == "resnet18" and raw["class_names"][4] == "c4"
    loaded, meta = load_model(path)
    assert "state_dict" not in meta and meta["num_classes"] == 5 and meta["proj_dim"] == 8
    model.eval()
    loaded.eval()
    img = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.equal(model.predict(img), loaded.predict(img))
    model.train()


def test_bad_model_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_model(tmp_path / "nothere.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"format": "other"}, bad)
    with pytest.raises(ValueError, match="bad.pt"):
        read_model_file(bad)


def test_load_init_weights_skips_mismatched_heads(model, tmp_path):
    path = _save(model, tmp_path / "coco.pt")
    target = build_segmentor(TINY, num_classes=7, proj_dim=4)
    report = load_init_weights(target, path)
    assert "decode_head.conv_seg.weight" in report.mismatched
    assert "projection.fc.weight" in report.mismatched
    assert not report.unexpected
    assert torch.equal(target.backbone.model.conv1.weight, model.backbone.model.conv1.weight)
    assert torch.equal(target.decode_head.fpn_bottleneck.conv.weight, model.decode_head.fpn_bottleneck.conv.weight)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["swin_large_patch4_window12_384", "cswin_large", "resnet50", "resnest101e"])
def test_paper_scale_segmentor_trains_one_step_on_cpu(backbone):
    """The real-size models build, run a clip forward/backward and give finite gradients (no weights needed)."""
    params = ModelParams(backbone=backbone, channels=512, aux_channels=256, drop_path=0.3, grad_checkpointing=True)
    model = build_segmentor(params, num_classes=124, proj_dim=512)
    out = model(torch.rand(2, 2, 3, 64, 64) * 255)
    labels = torch.randint(0, 124, (2, 2, 64, 64))
    total, _ = segmentor_loss(out, labels, 0.4, StclParams(dim=512))
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
