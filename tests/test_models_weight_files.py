"""Reading weights files: one clear line per unreadable file, format detection, strict init (issue 14, 8-9)."""

from __future__ import annotations

import re

import pytest
import torch

from stcl.models import build_encoder, build_segmentor, load_init_weights, read_model_file, save_model
from stcl.models.files import detect_format, open_weights
from stcl.params import ModelParams

TINY = ModelParams(backbone="resnet18", channels=8, aux_channels=8)


class Gadget:
    """A pickled class: weights_only loading must refuse it, never suggest the unsafe path."""


def _model_file(tmp_path, params=TINY, num_classes=3, proj_dim=None, name="m.pt"):
    model = build_segmentor(params, num_classes, proj_dim)
    path = tmp_path / name
    save_model(
        path,
        model,
        model_params=params,
        num_classes=num_classes,
        proj_dim=proj_dim,
        label_space="vspw",
        class_names=[f"c{i}" for i in range(num_classes)],
    )
    return path, model


def _bad_files(tmp_path):
    good, _ = _model_file(tmp_path)
    data = good.read_bytes()
    files = {}
    files["truncated"] = tmp_path / "truncated.pt"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["not a torch"] = tmp_path / "notes.pt"
    files["not a torch"].write_text("these are not weights\n")
    files["empty"] = tmp_path / "empty.pt"
    files["empty"].write_bytes(b"")
    files["pickled"] = tmp_path / "pickled.pt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "meta": Gadget()}, files["pickled"])
    return files


EXPECTED = {
    "truncated": r"truncated\.pt: .* is truncated or damaged",
    "not a torch": r"notes\.pt: .* is not a torch checkpoint",
    "empty": r"empty\.pt: .* is empty",
    "pickled": r"pickled\.pt: .* holds pickled Python objects \(.*Gadget\), which are refused",
}


@pytest.mark.parametrize("kind", list(EXPECTED))
@pytest.mark.parametrize("reader", ["read_model_file", "load_init_weights", "build_encoder"])
def test_unreadable_files_get_one_clear_line(tmp_path, kind, reader):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(ValueError) as info:
        if reader == "read_model_file":
            read_model_file(path)
        elif reader == "load_init_weights":
            load_init_weights(build_segmentor(TINY, 3), path)
        else:
            build_encoder("resnet18", pretrained=path)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(EXPECTED[kind], message), message
    assert "weights_only=False" not in message and "weights_only" not in message.replace("weights_only loading", "")


def test_init_from_another_backbone_is_refused(tmp_path):
    """A resnet18 model file as init of a Swin model: an error naming the file and both backbones."""
    path, _ = _model_file(tmp_path, name="resnet18_stage.pt")
    target = build_segmentor(ModelParams(backbone="swin_mini", channels=8, aux_channels=8), 3)
    with pytest.raises(ValueError, match=r"resnet18_stage.pt: holds a resnet backbone.*swin"):
        load_init_weights(target, path)


def test_init_from_a_resized_model_is_refused_unless_listed(tmp_path):
    """Same backbone family, other widths (channels 8 → 16): strict unless the user lists what to leave out."""
    path, _ = _model_file(tmp_path)
    wider = ModelParams(backbone="resnet18", channels=16, aux_channels=8)
    target = build_segmentor(wider, 3)
    with pytest.raises(ValueError, match=r"m.pt: does not fit .*mis-shaped \[decode_head\..*model.load_exclude"):
        load_init_weights(target, path)
    report = load_init_weights(target, path, exclude=("decode_head.*",))
    assert report.mismatched and all(k.startswith("decode_head.") for k in report.mismatched)
    assert report.loaded > 0


def test_label_space_change_leaves_only_the_classifiers_out(tmp_path):
    """COCO-pre (133 classes, no projection) → VSPW (124, projection): recorded in the file, so allowed."""
    path, src = _model_file(tmp_path, num_classes=5, proj_dim=None)
    target = build_segmentor(TINY, 3, proj_dim=4)
    report = load_init_weights(target, path)
    assert sorted(report.mismatched) == [
        "auxiliary_head.conv_seg.bias",
        "auxiliary_head.conv_seg.weight",
        "decode_head.conv_seg.bias",
        "decode_head.conv_seg.weight",
    ]
    assert {k.split(".")[0] for k in report.missing} == {"projection"}
    assert torch.equal(target.decode_head.bottleneck.conv.weight, src.decode_head.bottleneck.conv.weight)
    assert target.loaded_from[-1]["source"] == str(path)


def test_model_file_records_what_was_loaded_from_where(tmp_path):
    path, _ = _model_file(tmp_path, name="first.pt")
    model = build_segmentor(TINY, 3)
    load_init_weights(model, path)
    out = tmp_path / "second.pt"
    save_model(
        out, model, model_params=TINY, num_classes=3, proj_dim=None, label_space="vspw", class_names=["a", "b", "c"]
    )
    record = read_model_file(out)["loaded_from"]
    assert record[0]["source"] == str(path) and record[0]["format"] == "stcl-model" and record[0]["loaded"] > 0


@pytest.mark.parametrize(
    ("layout", "fmt"),
    [
        (
            {
                "model": {
                    "layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(169, 3),
                    "layers.0.downsample.reduction.weight": torch.zeros(2, 4),
                }
            },
            "swin-official",
        ),
        (
            {
                "layers.1.downsample.reduction.weight": torch.zeros(2, 4),
                "layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(529, 3),
            },
            "swin-timm",
        ),
        (
            {
                "state_dict": {
                    "backbone.stages.0.blocks.0.attn.w_msa.relative_position_bias_table": torch.zeros(169, 3),
                    "decode_head.conv_seg.weight": torch.zeros(2, 2, 1, 1),
                },
                "meta": {},
            },
            "mmseg",
        ),
        ({"state_dict_ema": {"stage1_conv_embed.0.weight": torch.zeros(1)}}, "cswin-official"),
        ({"conv1.weight": torch.zeros(1), "layer1.0.conv1.weight": torch.zeros(1)}, "resnet-timm"),
    ],
)
def test_formats_are_detected(layout, fmt):
    wf = detect_format(layout, "x.pth")
    assert wf.format == fmt
    if fmt.startswith("swin") or fmt == "mmseg":
        assert wf.window == (7 if fmt != "swin-timm" else 12)


def test_safetensors_weights_are_read(tmp_path):
    from safetensors.torch import save_file

    src = build_encoder("resnet18")
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(path))
    assert open_weights(path).format == "resnet-timm"
    enc = build_encoder("resnet18", pretrained=path)
    assert torch.equal(enc.model.layer2[0].conv1.weight, src.model.layer2[0].conv1.weight)


def test_mmcv_imagenet_resnet_v1c_file_loads(tmp_path):
    """open-mmlab://resnet50_v1c layout (deep stem ``stem.N``, ``fc``): the file mmseg's UperNet-R50 starts from."""
    from stcl.models.resnet import timm_resnet_to_mmseg

    src = build_encoder("resnet50")
    state = timm_resnet_to_mmseg(src.state_dict()) | {
        "fc.weight": torch.zeros(1000, 2048),
        "fc.bias": torch.zeros(1000),
    }
    assert "stem.7.running_var" in state
    path = tmp_path / "resnet50_v1c-2cccc1ad.pth"
    torch.save({"state_dict": state}, path)
    enc = build_encoder("resnet50", pretrained=path)
    assert torch.equal(enc.model.bn1.running_var, src.model.bn1.running_var)
