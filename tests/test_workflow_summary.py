"""`stcl summary` and `stcl ablation`: fast checks on hand-made results folders."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from stcl.ablations import TABLE_ABLATIONS, ablation, ablation_params
from stcl.cli import main
from stcl.commands.summary import job_times, summary_lines
from stcl.params import Params, load_params


def _metrics(model: str, miou: float) -> dict:
    return {
        "format": "stcl-metrics/1",
        "model": model,
        "split": "val",
        "mIoU": miou,
        "WIoU": miou,
        "VC8": 0.9,
        "VC16": 0.8,
        "videos": 2,
        "frames": 40,
        "vc_counts": {"VC8": {"videos": 2, "windows": 24}, "VC16": {"videos": 2, "windows": 8}},
        "per_class_IoU": {"wall": miou, "ceiling": None},
        "gt_class_pixels": {"wall": 300, "ceiling": 100},
    }


def test_summary_reports_files_times_metrics_and_chance(tmp_path):
    res = tmp_path / "results"
    (res / "benchmarks/evaluate").mkdir(parents=True)
    (res / "benchmarks/train_stcl.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    (res / "benchmarks/evaluate/teacher.tsv").write_text("s\th:m:s\tmax_rss\n1.5\t0:00:01\t100\n")
    (res / "evaluate").mkdir()
    for model, miou in (("train_stcl", 0.5), ("teacher", 0.25)):
        (res / "evaluate" / f"{model}.json").write_text(json.dumps(_metrics(model, miou)))
    with zipfile.ZipFile(res / "test_submission.zip", "w") as zf:
        zf.writestr("v1/00000001.png", b"x")
    text = "\n".join(summary_lines(res / "test_submission.zip", res / "tables/tables.md", res / "benchmarks", res / "evaluate"))
    assert "test_submission.zip (1 PNG frames" in text
    assert "tables.md (not built)" in text
    assert "train_stcl" in text and "12.5 s" in text and "evaluate/teacher" in text and "14.0 s" in text
    lines = text.splitlines()
    stcl_row = next(line for line in lines if line.strip().startswith("train_stcl ") and "50.00" in line)
    assert stcl_row.split()[1:5] == ["50.00", "50.00", "90.00", "80.00"]
    # chance: constant "wall" (3/4 of pixels) → mIoU = 0.75 / 2 classes present
    assert any(line.strip().startswith("chance: constant") and "37.50" in line for line in lines), text
    assert dict(job_times(res / "benchmarks")) == {"train_stcl": 12.5, "evaluate/teacher": 1.5}
    assert " TC " not in lines[[i for i, line in enumerate(lines) if "(%, val)" in line][0]] + " "

    # with TC (a RAFT file was set): one more column; the model without TC shows —
    record = _metrics("train_stcl", 0.5) | {"TC": 0.456740564300}
    (res / "evaluate" / "train_stcl.json").write_text(json.dumps(record))
    lines = summary_lines(res / "test_submission.zip", res / "tables/tables.md", res / "benchmarks", res / "evaluate")
    header = next(line for line in lines if "(%, val)" in line)
    assert header.split()[1:6] == ["mIoU", "WIoU", "VC8", "VC16", "TC"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[lines.index(header) + 1 :] if line.strip()}
    assert rows["train_stcl"] == ["50.00", "50.00", "90.00", "80.00", "45.67"]
    assert rows["teacher"][4] == "—"


def test_summary_of_an_empty_run_says_what_is_missing(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("{}\n")
    none = tmp_path / "none"
    paths = ["--submission", none / "sub.zip", "--tables", none / "t.md", "--benchmarks", none / "b", "--metrics-dir", none / "m"]
    assert main(["summary", "--params", str(tmp_path / "params.yaml"), *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "(not built)" in out and "none yet" in out


def test_ablations_override_only_their_stage():
    base = Params()
    grid = ablation_params(base, "stcl_d256_t0.05")
    assert (grid.train_stcl.stcl.dim, grid.train_stcl.stcl.tau, grid.train_stcl.stcl.enabled) == (256, 0.05, True)
    assert grid.train_ade == base.train_ade and grid.model == base.model
    b = ablation_params(base, "baseline_resnet50")
    assert b.model.backbone == "resnet50" and b.train_stcl.init is None and not b.train_stcl.stcl.enabled
    coco = ablation_params(base, "train_coco")
    assert [d.name for d in coco.train_stcl.datasets] == ["vspw", "coco"]
    for names in TABLE_ABLATIONS.values():
        for name in names:
            assert ablation(name).stage == "train_stcl"
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation("stcl_dX_t1")


def test_stcl_ablation_writes_a_loadable_params_file(tmp_path):
    out = tmp_path / "abl" / "params.yaml"
    params = Path(__file__).resolve().parent.parent / "params.yaml"
    assert main(["ablation", "train_nostcl", "--params", str(params), "--out", str(out)]) == 0
    loaded = load_params(out)
    assert loaded.train_stcl.stcl.enabled is False and loaded.train_stcl.init == "pretrain_coco"
    assert yaml.safe_load(out.read_text())["synth"] == yaml.safe_load(params.read_text())["synth"]
