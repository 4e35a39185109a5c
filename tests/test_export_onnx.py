"""`stcl export` → onnxruntime: the exported graph equals the torch model at sizes the export never saw, for
every exportable encoder family, and `stcl predict` / `stcl infer` with ``--engine onnxruntime`` equal the torch
engine.

Exporting is the cost here (the dynamo trace with symbolic sizes, its decompositions and onnxscript's
optimiser; not the tensor sizes), so each model is exported once: the default tiny model (ResNet-18 UperNet,
VSPW classes) by `stcl export` in a module fixture (`tiny`) shared by the ResNet check, `stcl predict` and
`stcl infer` (one xdist group, so one worker exports it), every other family in its own test."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from _data_fixtures import write_vspw_root
from _video_fixtures import encode_mp4, synth_vspw
from stcl.cli import main
from stcl.data.classes import VSPW_CLASSES
from stcl.models import build_segmentor, save_model
from stcl.models.dino import DINO_SPECS, build_dino
from stcl.models.dino_files import official_dinov2_pos_embed
from stcl.models.dynamic_shapes import bicubic_matrix, dinov2_pos_embed
from stcl.models.resnet import TimmCnnEncoder
from stcl.models.onnx_export import FORMAT, export_onnx, export_segmentor, export_size
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
        assert got.shape == ref.shape == (n, model.num_classes, h, w)
        err = np.abs(got - ref).max()
        assert err <= 1e-4 * np.abs(ref).max(), f"{onnx_file.name} at {n}x{h}x{w}: max error {err}"


@pytest.mark.parametrize("backbone", ["swin_mini", "cswin_mini", "dinov2_tiny", "dinov3_tiny"])  # resnet18: the `tiny` export
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


# the TTA of the tiny model's params file (`_params_yaml`), which `stcl export` writes into the file
TINY_TTA = {"scales": [0.75, 1.0], "flip": True, "crop_size": [32, 32], "stride": [24, 24]}


def _metadata(onnx_file: Path) -> dict[str, str]:
    """The file's ``stcl.*`` metadata; asserts its input's dims are the dynamic batch, height and width."""
    import onnx

    proto = onnx.load(str(onnx_file))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["stcl.format"] == FORMAT
    return meta


def _params_yaml(folder: Path) -> Path:
    import yaml

    path = folder / "params_export.yaml"
    data = Params().model_dump(mode="json")
    data["infer"].update(TINY_TTA)
    path.write_text(yaml.safe_dump(data))
    return path


TINY = pytest.mark.xdist_group("export_tiny")  # the tests of the `tiny` export run on one worker


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SimpleNamespace:
    """The default tiny model (params.yaml ``model``: ResNet-18 UperNet, VSPW classes, BatchNorm statistics
    randomised) as model.pt and as the .onnx of `stcl export` with the params file ``params`` (TTA `TINY_TTA`)."""
    folder = tmp_path_factory.mktemp("tiny_export")
    torch.manual_seed(0)
    params = Params().model
    model = build_segmentor(params, len(VSPW_CLASSES), load_pretrained=False).eval()
    _randomise_bn(model)
    pt = save_model(folder / "model.pt", model, model_params=params, num_classes=len(VSPW_CLASSES), proj_dim=None,
                    label_space="vspw", class_names=VSPW_CLASSES)
    params_yaml = _params_yaml(folder)
    onnx_file = folder / "model.onnx"
    assert main(["export", str(pt), "--out", str(onnx_file), "--params", str(params_yaml)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.pt", "params_export.yaml"]  # no temporary
    return SimpleNamespace(model=model, pt=pt, onnx=onnx_file, params=params_yaml)


@TINY
def test_resnet_export_equals_torch_at_any_size_and_describes_itself(tiny):
    _check(tiny.model, tiny.onnx, (2, 3, *export_size(tiny.model)))
    meta = _metadata(tiny.onnx)
    assert meta["stcl.label_space"] == "vspw" and meta["stcl.backbone"] == "resnet18"
    assert json.loads(meta["stcl.class_names"]) == list(VSPW_CLASSES)
    assert json.loads(meta["stcl.tta"]) == TINY_TTA
    assert len(json.loads(meta["stcl.palette"])) == len(VSPW_CLASSES)
    assert json.loads(meta["stcl.source"])["name"] == "model.pt"


def _same_labels(a_dir: Path, b_dir: Path, pattern: str) -> list[str]:
    """The label PNGs ``pattern`` of two folders: the same names, equal on >= 99.9% of their pixels."""
    names = sorted(str(p.relative_to(a_dir)) for p in a_dir.glob(pattern))
    assert names and names == sorted(str(p.relative_to(b_dir)) for p in b_dir.glob(pattern))
    same = total = 0
    for name in names:
        a, b = np.asarray(Image.open(a_dir / name)), np.asarray(Image.open(b_dir / name))
        assert a.shape == b.shape
        same, total = same + int((a == b).sum()), total + a.size
    assert same >= 0.999 * total
    return names


@TINY
def test_predict_with_onnxruntime_equals_torch(tiny, tmp_path, capsys):
    from stcl.infer.ensemble import load_models
    from stcl.infer.frames import frame_probs
    from stcl.infer.multiscale import tta_from_params
    from stcl.infer.onnx_engine import load_onnx_models
    from stcl.data.vspw import frame_path, list_frames, read_split

    root = synth_vspw(tmp_path / "VSPW_480p", frames=20, val=1)
    video = read_split(root, "val")[0]
    frames = [np.asarray(Image.open(frame_path(root, video, s)).convert("RGB")) for s in list_frames(root, video)][:6]
    mp4 = encode_mp4(frames, tmp_path / "clip.mp4", Fraction(6))

    tta = tta_from_params(Params().infer, scales=(0.75, 1.0), flip=True, crop_size=(32, 32), stride=(24, 24))
    torch_probs = frame_probs(load_models({"m": tiny.pt}), tta, enumerate(frames))
    onnx_probs = frame_probs(load_onnx_models({"m": tiny.onnx}), tta, enumerate(frames))
    for (_, _, a), (_, _, b) in zip(torch_probs, onnx_probs, strict=True):
        assert (a["m"] - b["m"]).abs().max().item() <= 1e-4

    outs = {}
    for engine, model_path in (("torch", tiny.pt), ("onnxruntime", tiny.onnx)):
        outs[engine] = tmp_path / engine
        # onnxruntime: no --params, the TTA defaults come from the file (the params it was exported with)
        extra = ["--params", str(tiny.params)] if engine == "torch" else []
        assert main(["predict", str(mp4), "--model", str(model_path), "--engine", engine, "--out", str(outs[engine]),
                     "--device", "cpu", *extra]) == 0
    capsys.readouterr()
    _same_labels(outs["torch"] / "labels", outs["onnxruntime"] / "labels", "*.png")


@TINY
def test_infer_with_onnxruntime_equals_torch(tiny, tmp_path, capsys):
    """`stcl infer --engine onnxruntime` (the split command line: --checkpoint, --output, --save-probs) writes the
    torch engine's labels (>= 99.9% of pixels) and probabilities (within 1e-4) for a VSPW root. The frames are
    larger than the crop at scale 1 (2 x 3 windows) and smaller in height at 0.75; two videos, one a frame."""
    root = write_vspw_root(tmp_path / "VSPW", {"va": (2, 40, 56), "vb": (1, 36, 30)}, split="val")
    outs = {}
    for engine, model_path in (("torch", tiny.pt), ("onnxruntime", tiny.onnx)):
        outs[engine] = tmp_path / engine
        assert main(["infer", "--params", str(tiny.params), "--root", str(root), "--split", "val", "--device", "cpu",
                     "--engine", engine, "--checkpoint", f"m={model_path}", "--output", f"m=m={outs[engine]}",
                     "--save-probs"]) == 0
    capsys.readouterr()
    names = _same_labels(outs["torch"], outs["onnxruntime"], "*/*.png")
    assert names == ["va/00000000.png", "va/00000001.png", "vb/00000000.png"]
    for name in names:
        a = np.load(outs["torch"] / name.replace(".png", ".npy")).astype(np.float32)
        b = np.load(outs["onnxruntime"] / name.replace(".png", ".npy")).astype(np.float32)
        assert a.shape == b.shape == (len(VSPW_CLASSES), *Image.open(outs["torch"] / name).size[::-1])
        # the files hold float16: probabilities within 1e-4 may round to neighbouring float16 values, so the
        # bar is 1e-4 plus one float16 step at the value
        step = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(np.float32)
        assert (np.abs(a - b) <= 1e-4 + step).all(), name
