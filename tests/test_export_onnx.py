"""`stcl export` → onnxruntime: the exported graph equals the torch model at sizes the export never saw, for
every exportable encoder family, and `stcl predict --engine onnxruntime` equals the torch engine."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _video_fixtures import encode_mp4, synth_vspw
from stcl.cli import main
from stcl.data.classes import VSPW_CLASSES
from stcl.models import build_segmentor, save_model
from stcl.models.resnet import TimmCnnEncoder
from stcl.models.onnx_export import FORMAT, export_onnx, export_segmentor
from stcl.models.segmentor import Segmentor
from stcl.params import InferParams, ModelParams, Params

# (N, H, W) besides the export size: not a multiple of any window/patch/stride, smaller than the default
# crop (64) in both directions, and a multiple of 7·32 in one direction
SIZES = [(1, 50, 77), (1, 40, 52), (3, 112, 224)]
CLASSES = 5


def _save(path: Path, model: Segmentor, params: ModelParams) -> Path:
    names = [f"class{i}" for i in range(CLASSES)]
    return save_model(path, model, model_params=params, num_classes=CLASSES, proj_dim=None, label_space="toy",
                      class_names=names)


def _randomise_bn(model: Segmentor) -> None:
    """BatchNorm statistics away from (0, 1), so the exported normalisation is really exercised."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _check(model: Segmentor, onnx_file: Path, example: tuple[int, ...]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    for n, h, w in [(example[0], example[2], example[3]), *SIZES]:
        images = torch.rand((n, 3, h, w), generator=g) * 255
        with torch.no_grad():
            ref = model.predict(images).numpy()
        (got,) = session.run(["logits"], {"images": images.numpy()})
        assert got.shape == ref.shape == (n, CLASSES, h, w)
        err = np.abs(got - ref).max()
        assert err <= 1e-4 * np.abs(ref).max(), f"{onnx_file.name} at {n}x{h}x{w}: max error {err}"


@pytest.mark.parametrize("backbone", ["resnet18", "swin_mini", "cswin_mini"])
def test_exported_logits_equal_torch_at_any_size(backbone, tmp_path):
    torch.manual_seed(0)
    params = ModelParams(backbone=backbone, drop_path=0.0)
    model = build_segmentor(params, CLASSES, load_pretrained=False).eval()
    _randomise_bn(model)
    infer = InferParams(scales=(0.5, 1.0), flip=False, crop_size=(64, 64), stride=(48, 48))
    result = export_onnx(_save(tmp_path / "model.pt", model, params), tmp_path / "model.onnx", infer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pt"]  # no temporary left
    _check(model, result.path, result.example)

    import onnx

    proto = onnx.load(str(result.path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["stcl.format"] == FORMAT and meta["stcl.label_space"] == "toy"
    assert json.loads(meta["stcl.class_names"]) == [f"class{i}" for i in range(CLASSES)]
    assert json.loads(meta["stcl.tta"]) == {"scales": [0.5, 1.0], "flip": False, "crop_size": [64, 64], "stride": [48, 48]}
    assert len(json.loads(meta["stcl.palette"])) == CLASSES
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]


def test_resnest_family_exports(tmp_path):
    """ResNeSt (split attention, avg-pool downsampling): a 14-layer timm ResNeSt as the encoder."""
    torch.manual_seed(0)
    model = Segmentor(TimmCnnEncoder("resnest14d"), num_classes=CLASSES, channels=32, aux_channels=16).eval()
    _randomise_bn(model)
    meta = {"num_classes": CLASSES, "label_space": "toy", "class_names": [], "model_params": {"backbone": "resnest14d"}}
    result = export_segmentor(model, meta, tmp_path / "resnest.onnx", InferParams())
    assert result.family == "resnest"
    _check(model, result.path, result.example)


def test_bad_inputs_get_one_line_and_leave_no_file(tmp_path, capsys):
    not_model = tmp_path / "notes.pt"
    torch.save({"weights": torch.zeros(2)}, not_model)
    out = tmp_path / "m.onnx"
    assert main(["export", str(not_model), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(not_model) in err
    params = ModelParams(backbone="dinov2_tiny", drop_path=0.0)
    dino = _save(tmp_path / "dino.pt", build_segmentor(params, CLASSES, load_pretrained=False), params)
    assert main(["export", str(dino), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(dino) in err and "dinov2" in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.suffix == ".onnx" or ".tmp" in p.name] == []
    assert main(["predict", str(tmp_path), "--engine", "onnxruntime", "--model", str(not_model),
                 "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(not_model) in err


def test_predict_with_onnxruntime_equals_torch(tmp_path, capsys):
    from stcl.infer.ensemble import load_models
    from stcl.infer.frames import frame_probs
    from stcl.infer.multiscale import tta_from_params
    from stcl.infer.onnx_engine import load_onnx_models
    from stcl.data.vspw import frame_path, list_frames, read_split

    root = synth_vspw(tmp_path / "VSPW_480p", frames=20, val=1)
    video = read_split(root, "val")[0]
    frames = [np.asarray(Image.open(frame_path(root, video, s)).convert("RGB")) for s in list_frames(root, video)][:6]
    mp4 = encode_mp4(frames, tmp_path / "clip.mp4", Fraction(6))
    torch.manual_seed(0)
    params = Params().model
    model = build_segmentor(params, len(VSPW_CLASSES), load_pretrained=False)
    pt = save_model(tmp_path / "model.pt", model, model_params=params, num_classes=len(VSPW_CLASSES), proj_dim=None,
                    label_space="vspw", class_names=VSPW_CLASSES)
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", str(pt), "--out", str(onnx_file), "--params", str(_params_yaml(tmp_path))]) == 0
    capsys.readouterr()

    tta = tta_from_params(Params().infer, scales=(0.75, 1.0), flip=True, crop_size=(32, 32), stride=(24, 24))
    torch_probs = frame_probs(load_models({"m": pt}), tta, enumerate(frames))
    onnx_probs = frame_probs(load_onnx_models({"m": onnx_file}), tta, enumerate(frames))
    for (_, _, a), (_, _, b) in zip(torch_probs, onnx_probs, strict=True):
        assert (a["m"] - b["m"]).abs().max().item() <= 1e-4

    outs = {}
    for engine, model_path in (("torch", pt), ("onnxruntime", onnx_file)):
        outs[engine] = tmp_path / engine
        # onnxruntime: no --params, the TTA defaults come from the file (the params it was exported with)
        extra = ["--params", str(_params_yaml(tmp_path))] if engine == "torch" else []
        assert main(["predict", str(mp4), "--model", str(model_path), "--engine", engine, "--out", str(outs[engine]),
                     "--device", "cpu", *extra]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in (outs["torch"] / "labels").glob("*.png"))
    assert names and names == sorted(p.name for p in (outs["onnxruntime"] / "labels").glob("*.png"))
    same = total = 0
    for name in names:
        a = np.asarray(Image.open(outs["torch"] / "labels" / name))
        b = np.asarray(Image.open(outs["onnxruntime"] / "labels" / name))
        same, total = same + int((a == b).sum()), total + a.size
    assert same >= 0.999 * total


def _params_yaml(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "params_export.yaml"
    if not path.exists():
        data = Params().model_dump(mode="json")
        data["infer"].update(scales=[0.75, 1.0], flip=True, crop_size=[32, 32], stride=[24, 24])
        path.write_text(yaml.safe_dump(data))
    return path
