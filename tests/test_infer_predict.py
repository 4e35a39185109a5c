"""Predicting a split: palette PNGs per video, atomic folders, resume; the CLI commands end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _data_fixtures import write_vspw_root
from _infer_fixtures import PointwiseNet
from _weights_fixtures import model_file
from PIL import Image

from stcl.data import vspw
from stcl.infer.frames import image_tensor
from stcl.data.palette import label_palette
from stcl.infer.multiscale import TTA, tta_probs
from stcl.infer.outputs import OutputSpec, predict_outputs
from stcl.infer.sliding import Window

VIDEOS = {"v1": (2, 20, 28), "v2": (3, 18, 18)}
TTA_SMALL = TTA(scales=(0.5, 1.0), flip=True, window=Window((16, 16), (12, 12)), batch_size=8)


def predict_videos(predict, tta, root, videos, out, save_probs=False, progress=False):
    """One model's predictions of ``videos`` into ``out`` (a one-output `predict_outputs`)."""
    return predict_outputs({"m": predict}, [OutputSpec("m", ("m",), out, save_probs=save_probs)], tta, root, videos,
                           progress=progress)


class Counting:
    def __init__(self) -> None:
        self.model = PointwiseNet(num_classes=124, seed=1).eval()
        self.images = 0

    def __call__(self, x):
        self.images += x.shape[0]
        return self.model(x)


def test_predictions_are_palette_pngs_of_the_argmax(tmp_path: Path):
    root = write_vspw_root(tmp_path / "VSPW", VIDEOS, split="val")
    model = Counting()
    summary = predict_videos(
        model, TTA_SMALL, root, ["v1", "v2"], tmp_path / "out", save_probs=True, progress=False
    )
    assert summary.computed == ["v1", "v2"] and summary.frames == 5
    for video, (n, h, w) in VIDEOS.items():
        for i in range(n):
            png = tmp_path / "out" / video / f"{i:08d}.png"
            with Image.open(png) as img:
                assert img.mode == "P" and img.size == (w, h)
                assert img.getpalette()[: 3 * 256] == label_palette()
                pred = np.asarray(img)
            image = image_tensor(vspw.load_image(vspw.frame_path(root, video, f"{i:08d}")))
            probs = tta_probs(model.model, image[None], TTA_SMALL)[0]
            assert np.array_equal(pred, probs.argmax(0).numpy())
            saved = np.load(tmp_path / "out" / video / f"{i:08d}.npy")
            assert saved.dtype == np.float16 and saved.shape == (124, h, w)
            np.testing.assert_allclose(saved.astype(np.float32), probs.numpy(), atol=2e-3)


def test_rerun_skips_complete_videos_and_redoes_partial_ones(tmp_path: Path):
    root = write_vspw_root(tmp_path / "VSPW", VIDEOS, split="val")
    out = tmp_path / "out"
    predict_videos(Counting(), TTA_SMALL, root, ["v1", "v2"], out, progress=False)
    before = {p: p.read_bytes() for p in out.glob("*/*.png")}
    (out / "v2" / "00000002.png").unlink()  # partial video
    (out / ".v1.dead0000.tmp").mkdir()  # temp folder of a killed run
    model = Counting()
    summary = predict_videos(model, TTA_SMALL, root, ["v1", "v2"], out, progress=False)
    assert summary.skipped == ["v1"] and summary.computed == ["v2"] and summary.frames == 3
    assert {p: p.read_bytes() for p in out.glob("*/*.png")} == before
    assert sorted(p.name for p in out.iterdir()) == ["v1", "v2"]
    assert model.images > 0


def test_failure_mid_video_leaves_no_video_folder(tmp_path: Path):
    root = write_vspw_root(tmp_path / "VSPW", VIDEOS, split="val")
    calls = []

    def failing(x):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("killed")
        return PointwiseNet(124)(x)

    with pytest.raises(RuntimeError, match="killed"):
        predict_videos(failing, TTA_SMALL, root, ["v1"], tmp_path / "out", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def _params_file(tmp_path: Path, root: Path, shards: int = 2) -> Path:
    from stcl.params import Params

    data = Params().model_dump(mode="json")
    data["data"].update(synthetic=False, vspw_root=str(root))
    data["data"]["unlabeled"] = {"source": "vspw", "splits": ["test"], "folder": None}
    data["infer"].update(scales=[0.75, 1.0], crop_size=[32, 32], stride=[24, 24], batch_size=4)
    data["pseudo_label"].update(shards=shards, scales=[1.0], flip=True)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_cli_infer_pseudo_label_and_submit_end_to_end(tmp_path: Path):
    from stcl.cli import main

    root = write_vspw_root(tmp_path / "VSPW", {"a": (2, 40, 56), "b": (1, 48, 32), "c": (1, 24, 40)}, split="test")
    params = _params_file(tmp_path, root)
    a = model_file(tmp_path / "m" / "train_ade" / "model.pt", seed=0)
    b = model_file(tmp_path / "m" / "train_stcl" / "model.pt", seed=1)
    pred = tmp_path / "pred"
    argv = ["infer", "--checkpoint", f"a={a}", "--checkpoint", f"b={b}", "--root", str(root), "--split", "test",
            "--params", str(params), "--device", "cpu"]
    assert main([*argv, "--output", f"ensemble=a,b:2,1={pred}"]) == 0
    zip_path = tmp_path / "sub.zip"
    assert main(["submit", "--pred", str(pred), "--root", str(root), "--out", str(zip_path)]) == 0
    assert zip_path.is_file()
    assert main([*argv, "--output", f"ensemble=a,b:1={pred}"]) == 1  # one weight for two members: a clear error

    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("".join(f"{v}/{s}\n" for v in ("a", "b", "c") for s in vspw.list_frames(root, v)))
    out = tmp_path / "pseudo"
    ds = out / "VSPW_pseudo"
    common = ["--params", str(params), "--unlabeled", str(unlabeled), "--dataset", str(ds), "--root", str(root)]
    records = [str(out / "shards" / f"{i}-of-2.json") for i in range(2)]
    teacher = ["--checkpoint", f"train_ade={a}", "--checkpoint", f"train_stcl={b}"]
    assert main(["pseudo_label", "--shard", "0/3", *common, *teacher, "--record", records[0]]) == 1  # N != shards
    assert main(["pseudo_label", "--shard", "0/2", *common, "--record", records[0]]) == 1  # needs the checkpoints
    for i in range(2):
        assert main(["pseudo_label", "--shard", f"{i}/2", *common, *teacher, "--record", records[i]]) == 0
    assert main(["pseudo_label", "--gather", *common, "--record", records[0], "--stats", str(out / "stats.json")]) == 1
    assert main(["pseudo_label", "--gather", *common, "--record", *records, "--stats", str(out / "stats.json")]) == 0
    assert vspw.read_split(ds, "train") == ["a", "b", "c"]
    assert vspw.load_train_ids(vspw.mask_path(ds, "b", "00000000")).shape == (48, 32)
    assert (out / "stats.json").is_file()


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_prefetch_keeps_order(workers):
    from stcl.infer.frames import prefetch

    assert list(prefetch(lambda p: p * 2, range(9), workers)) == [2 * i for i in range(9)]
    assert list(prefetch(lambda p: p, [], workers)) == []


def test_load_models_checks_files_and_label_space(tmp_path: Path):
    from stcl.infer.ensemble import load_models

    good = model_file(tmp_path / "a.pt", seed=0)
    coco = model_file(tmp_path / "coco.pt", label_space="coco")
    models = load_models({"a": good, "b": good}, amp="bf16")  # bf16 applies on CUDA only: float32 here
    x = torch.rand(2, 3, 32, 32) * 255
    assert list(models) == ["a", "b"] and models["a"](x).shape == (2, 124, 32, 32)
    with pytest.raises(ValueError, match=r"coco\.pt: label space 'coco', expected 'vspw'"):
        load_models({"a": good, "c": coco})
    with pytest.raises(FileNotFoundError, match="missing.pt: model file not found"):
        load_models({"m": tmp_path / "missing.pt"})
    with pytest.raises(ValueError, match="amp"):
        load_models({"a": good}, amp="fp8")


def test_autocast_predict_returns_float32_close_to_fp32():
    from stcl.infer.ensemble import _autocast_predict

    model = PointwiseNet(num_classes=7).eval()
    x = torch.rand(1, 3, 8, 8) * 255
    out = _autocast_predict(model, torch.device("cpu"), "bf16")(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, model(x), atol=0.1, rtol=0.05)
