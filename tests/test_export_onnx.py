"""`stcl export` → onnxruntime: the exported graph equals the torch model at sizes the export never saw, for
every exportable encoder family, and `stcl predict --engine onnxruntime` equals the torch engine."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from _video_fixtures import encode_mp4, synth_vspw
from stcl.cli import main
from stcl.data.classes import VSPW_CLASSES
from stcl.models import build_segmentor, save_model
from stcl.models.dino import DINO_SPECS, build_dino
from stcl.models.dino_files import official_dinov2_pos_embed
from stcl.models.dynamic_shapes import bicubic_matrix, dinov2_pos_embed
from stcl.models.resnet import TimmCnnEncoder
from stcl.models.onnx_export import FORMAT, export_onnx, export_segmentor
from stcl.models.segmentor import Segmentor
from stcl.params import InferParams, ModelParams, Params

# (N, H, W) besides the export size: not a multiple of any window/patch/stride, smaller than the default
# crop (64) in both directions, and a multiple of 7·32 in one direction
SIZES = [(1, 50, 77), (1, 40, 52), (3, 112, 224)]
# and for the DINO encoders: the tiny DINOv2's own 8×8 position grid (where the official resize is skipped)
# and a view below two patches in both directions (padded to a 2×2 token grid)
DINO_SIZES = [(1, 112, 112), (1, 20, 13)]
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


def _randomise_pos_table(model: Segmentor) -> None:
    """A ViT's learned position table at the spread of a pretrained one (std 0.5, not the init's 0.02), so an
    error in its resize shows in the logits."""
    pos = getattr(getattr(model.backbone, "model", None), "pos_embed", None)
    if pos is not None:
        with torch.no_grad():
            pos.normal_(std=0.5, generator=torch.Generator().manual_seed(2))


def _sizes(model: Segmentor) -> list[tuple[int, int, int]]:
    return [*SIZES, *DINO_SIZES] if str(model.backbone.family).startswith("dino") else SIZES


def _check(model: Segmentor, onnx_file: Path, example: tuple[int, ...]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    for n, h, w in [(example[0], example[2], example[3]), *_sizes(model)]:
        images = torch.rand((n, 3, h, w), generator=g) * 255
        with torch.no_grad():
            ref = model.predict(images).numpy()
        (got,) = session.run(["logits"], {"images": images.numpy()})
        assert got.shape == ref.shape == (n, CLASSES, h, w)
        err = np.abs(got - ref).max()
        assert err <= 1e-4 * np.abs(ref).max(), f"{onnx_file.name} at {n}x{h}x{w}: max error {err}"


@pytest.mark.parametrize("backbone", ["resnet18", "swin_mini", "cswin_mini", "dinov2_tiny", "dinov3_tiny"])
def test_exported_logits_equal_torch_at_any_size(backbone, tmp_path):
    torch.manual_seed(0)
    params = ModelParams(backbone=backbone, drop_path=0.0)
    model = build_segmentor(params, CLASSES, load_pretrained=False).eval()
    _randomise_bn(model)
    _randomise_pos_table(model)
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


def test_dinov2_reg4_exports(tmp_path):
    """The reg4 DINOv2 resizes its position table with ``size=`` and antialias (the other resize form)."""
    torch.manual_seed(0)
    model = Segmentor(build_dino("dinov2_tiny_reg4"), num_classes=CLASSES, channels=32, aux_channels=16).eval()
    _randomise_bn(model)
    _randomise_pos_table(model)
    meta = {"num_classes": CLASSES, "label_space": "toy", "class_names": [],
            "model_params": {"backbone": "dinov2_tiny_reg4"}}
    result = export_segmentor(model, meta, tmp_path / "reg4.onnx", InferParams())
    assert result.family == "dinov2"
    _check(model, result.path, result.example)


@pytest.mark.parametrize(("offset", "antialias"), [(0.1, False), (0.0, True), (0.0, False), (0.1, True)])
def test_bicubic_matrices_equal_torch_interpolate(offset, antialias):
    """`bicubic_matrix` (the resize the exported graph computes) against ``F.interpolate`` in both of its
    forms (``scale_factor`` when ``offset``, else ``size``): up, down, by one, unchanged, to 1 and 2."""
    g = torch.Generator().manual_seed(0)
    for m in (8, 37):
        x = torch.randn(1, 3, m, m, generator=g)
        for gh, gw in [(m, m), (m + 1, m), (m - 1, m + 3), (2, 2), (1, 1), (3, 9), (55, 30), (4, 100)]:
            kw = {"scale_factor": ((gh + offset) / m, (gw + offset) / m)} if offset else {"size": (gh, gw)}
            ref = F.interpolate(x, mode="bicubic", antialias=antialias, **kw)[0]
            rows, cols = (bicubic_matrix(m, g, offset, antialias, x) for g in (gh, gw))
            got = rows @ x[0] @ cols.T
            assert got.shape == ref.shape
            assert (got - ref).abs().max() <= 1e-5 * ref.abs().max(), (m, gh, gw)


@pytest.mark.parametrize("variant", ["dinov2_tiny", "dinov2_tiny_reg4"])
def test_dinov2_pos_embed_form_equals_official(variant):
    """The position resize used while exporting equals `official_dinov2_pos_embed` on every kind of grid,
    including the table's own (8 × 8: unchanged there) and grids equal to it along one axis only."""
    spec = DINO_SPECS[variant]
    table = torch.randn(1, 64, 6, generator=torch.Generator().manual_seed(0))
    for grid in [(8, 8), (8, 9), (7, 8), (2, 2), (3, 5), (30, 17), (55, 55)]:
        ref = official_dinov2_pos_embed(table, grid, offset=spec.interp_offset, antialias=spec.interp_antialias)
        got = dinov2_pos_embed(table, grid, offset=spec.interp_offset, antialias=spec.interp_antialias)
        assert got.shape == ref.shape == (1, grid[0] * grid[1], 6)
        assert (got - ref).abs().max() <= 1e-5 * ref.abs().max(), grid


@pytest.mark.parametrize("variant", ["dinov2_tiny", "dinov2_tiny_reg4", "dinov3_tiny"])
def test_dino_export_form_equals_eager(variant, monkeypatch):
    """The encoder computing as it does while exporting (pad and crop at every size, the matrix resize of
    the position table) gives the eager maps: at the pretrained grid, off a patch multiple, below two
    patches, and on a grid unlike the table's."""
    torch.manual_seed(0)
    encoder = build_dino(variant).eval()
    pos = getattr(encoder.model, "pos_embed", None)
    if pos is not None:
        with torch.no_grad():
            pos.normal_(std=0.5)
    sizes = [(112, 112), (128, 128), (50, 77), (20, 13), (112, 224), (97, 41)]
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(1, 3, h, w, generator=g) for h, w in sizes]
    with torch.no_grad():
        eager = [encoder(x) for x in images]
        monkeypatch.setattr("stcl.models.dino.exporting", lambda: True)
        forms = [encoder(x) for x in images]
    for (h, w), ref, got in zip(sizes, eager, forms, strict=True):
        for a, b in zip(ref, got, strict=True):
            assert a.shape == b.shape, (h, w)
            assert (a - b).abs().max() <= 1e-5 * a.abs().max(), (h, w)


class _ToyFamily(TimmCnnEncoder):
    """An encoder of a family with no export-safe form (every family stcl builds has one)."""

    family = "toy"


def test_bad_inputs_get_one_line_and_leave_no_file(tmp_path, capsys):
    not_model = tmp_path / "notes.pt"
    torch.save({"weights": torch.zeros(2)}, not_model)
    out = tmp_path / "m.onnx"
    assert main(["export", str(not_model), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(not_model) in err
    other = Segmentor(_ToyFamily("resnet18"), num_classes=CLASSES, channels=16, aux_channels=8)
    meta = {"num_classes": CLASSES, "model_params": {"backbone": "toy_net"}}
    with pytest.raises(ValueError, match="toy") as refused:
        export_segmentor(other, meta, out, InferParams(), what="toy.pt")
    assert "\n" not in str(refused.value) and "toy.pt" in str(refused.value)
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
