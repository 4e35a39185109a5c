"""The tiny DINOv2 variant (patch 14: every crop and window is padded to a multiple of 14) through the whole
chain under the local profile: synth → prepare → pretrain_coco → train_stcl / train_ade → teacher pseudo
labels → train_student → val/test inference → evaluate → tables; then `stcl predict` with its model."""

from __future__ import annotations

import json
import time

import pytest
from PIL import Image

from _workflow_fixtures import SNAKEMAKE, run, small_params, workflow_copy
from stcl.cli import main
from stcl.models import read_model_file
from stcl.roles import EVALUATED

pytestmark = pytest.mark.slow


def test_dinov2_tiny_through_the_chain_and_predict(tmp_path, capsys):
    work = workflow_copy(tmp_path / "repo", small_params({"model": {"backbone": "dinov2_tiny", "drop_path": 0.1}}))
    t = time.time()
    run([SNAKEMAKE, "--profile", "local"], work)
    print(f"dinov2_tiny chain: {time.time() - t:.0f} s")
    student = work / "results/models/train_student/model.pt"
    assert read_model_file(student)["model_params"]["backbone"] == "dinov2_tiny"
    rows = {}
    for model in EVALUATED:
        data = json.loads((work / f"results/metrics/{model}.json").read_text())
        assert 0.0 <= data["mIoU"] <= 1.0
        rows[model] = data["mIoU"]
    print("dinov2_tiny toy mIoU: " + ", ".join(f"{k} {v:.4f}" for k, v in rows.items()))
    assert (work / "results/pseudo/stats.json").is_file() and (work / "results/test_submission.zip").is_file()

    frames = tmp_path / "frames"
    frames.mkdir()
    src = sorted((work / "data/VSPW_480p/data").glob("*/origin/*.jpg"))[:3]
    for i, path in enumerate(src):
        Image.open(path).save(frames / f"{i:05d}.jpg")
    out = tmp_path / "pred"
    assert main(["predict", str(frames), "--model", str(student), "--out", str(out), "--params",
                 str(work / "params.yaml"), "--device", "cpu"]) == 0
    labels = sorted((out / "labels").glob("*.png"))
    assert len(labels) == 3 and Image.open(labels[0]).size == Image.open(src[0]).size
