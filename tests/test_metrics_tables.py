"""`stcl tables`: paper rows beside this run's rows, chance level, per-class table, files written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stcl.data.classes import VSPW_CLASSES
from stcl.metrics.tables import build_tables, chance_levels, tables_markdown, write_tables

NAMES = list(VSPW_CLASSES)


def _metrics(model: str, miou: float, *, dim: int | None = None, tau: float | None = None, backbone="resnet18"):
    info = {"backbone": backbone}
    if dim is not None:
        info["stcl"] = {"enabled": True, "dim": dim, "tau": tau}
    gt = {n: 0 for n in NAMES}
    gt["wall"], gt["ceiling"] = 300, 100
    iou = {n: None for n in NAMES}
    iou["wall"], iou["ceiling"] = 0.9, miou
    return {
        "format": "stcl-metrics/1",
        "model": model,
        "backbone": backbone,
        "split": "val",
        "mIoU": miou,
        "WIoU": 0.5,
        "VC8": 0.8,
        "VC16": 0.7,
        "videos": 2,
        "frames": 40,
        "vc_counts": {"VC8": {"videos": 2, "windows": 24}, "VC16": {"videos": 2, "windows": 8}},
        "per_class_IoU": iou,
        "gt_class_pixels": gt,
        "void_pixels": 5,
        "model_info": info,
    }


def _row(tables, key, method, dim=None):
    return next(r for r in tables[key][1] if r.method == method and r.dim == dim)


def test_models_fill_their_paper_rows():
    ms = [
        _metrics("train_stcl", 0.61, dim=512, tau=0.07, backbone="swin_large_patch4_window12_384"),
        _metrics("train_ade", 0.62),
        _metrics("teacher", 0.63),
        _metrics("train_student", 0.64),
        _metrics("ensemble", 0.65),
        _metrics("baseline_r50", 0.3, backbone="resnet50"),
        _metrics("something_else", 0.1),
    ]
    t = build_tables(ms)
    stcl_row = _row(t, "table3", "Swin-L + STCL", 512)
    assert stcl_row.tau == 0.07 and stcl_row.ours["mIoU"] == 0.61 and stcl_row.paper["mIoU"] == 0.5930
    assert _row(t, "table4", "Swin-L").ours["model"] == "train_stcl"
    assert (
        _row(t, "table2", "Swin-L + ADE").ours["mIoU"] == 0.62
        and _row(t, "table2", "Swin-L + ADE").paper["mIoU"] == 0.5670
    )
    assert (
        _row(t, "table4", "Teacher").ours["mIoU"] == 0.63 and _row(t, "table4", "Teacher").paper["val_mIoU"] == 0.6085
    )
    assert _row(t, "table4", "Swin-L + Pseudo").ours["mIoU"] == 0.64
    assert _row(t, "final", "Ensemble (CASIA_IVA)").paper["test1_mIoU"] == 0.5984
    assert _row(t, "table1", "ResNet-50").ours["model"] == "baseline_r50"
    assert [r.method for r in t["other"][1]] == ["something_else"]


def test_table3_grid_runs_fill_their_dim_tau_rows():
    t = build_tables([_metrics("stcl_d256_t0.07", 0.55), _metrics("stcl_d512_t0.05", 0.56)])
    assert _row(t, "table3", "Swin-L + STCL", 256).ours["mIoU"] == 0.55
    row = _row(t, "table3", "Swin-L + STCL", 512)
    assert row.tau == 0.07 and row.ours is None  # the 0.05 run fills the other 512 row
    assert next(r for r in t["table3"][1] if (r.dim, r.tau) == (512, 0.05)).ours["mIoU"] == 0.56
    assert t["other"][1] == []


def test_stcl_dim_tau_not_in_paper_gets_its_own_row():
    t = build_tables([_metrics("train_stcl", 0.4, dim=64, tau=0.07)])
    rows = t["table3"][1]
    assert all(r.ours is None for r in rows[:4])
    extra = rows[4]
    assert (extra.dim, extra.tau, extra.paper) == (64, 0.07, {}) and extra.ours["mIoU"] == 0.4
    md = tables_markdown([_metrics("train_stcl", 0.4, dim=64, tau=0.07)])
    assert "| Swin-L + STCL | 64 | 0.07 | train_stcl (ResNet-18, val) | — | 0.4000 |" in md


def test_chance_level_from_gt_frequencies():
    const, rand = chance_levels([_metrics("train_ade", 0.5)])
    # wall 300 of 400 counted pixels, 2 classes present: constant "wall" → IoU_wall = 0.75, ceiling 0.
    assert const["values"]["mIoU"] == pytest.approx(0.75 / 2)
    assert const["values"]["WIoU"] == pytest.approx(0.75**2)
    assert const["values"]["VC8"] == 1.0
    c = 124
    iou_w = (300 / c) / (300 + 400 / c - 300 / c)
    iou_c = (100 / c) / (100 + 400 / c - 100 / c)
    assert rand["values"]["mIoU"] == pytest.approx((iou_w + iou_c) / 2)
    assert rand["values"]["VC16"] == pytest.approx((1 / c) ** 15)


def test_write_tables_files_and_cli_without_torch(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for m in (_metrics("train_stcl", 0.6, dim=512, tau=0.05), _metrics("teacher", 0.7)):
        (metrics / f"{m['model']}.json").write_text(json.dumps(m))
    (metrics / "not_ours.json").write_text(json.dumps({"loss": 1.0}))
    out = tmp_path / "tables"
    code = (
        "import sys; from stcl.cli import main; "
        f"rc = main(['tables', '--metrics-dir', {str(metrics)!r}, '--out-dir', {str(out)!r}]); "
        "assert 'torch' not in sys.modules; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    md = (out / "tables.md").read_text()
    assert (
        "## Table 3." in md and "| Swin-L + STCL | 512 | 0.05 | train_stcl (ResNet-18, val) | 0.5876 | 0.6000 |" in md
    )
    assert "| wall | 0.9000 | 0.9000 |" in md
    frame = pd.read_parquet(out / "tables.parquet")
    ours = frame[(frame.table == "table4") & (frame.source == "ours") & (frame.metric == "mIoU")]
    assert set(ours.model) == {"train_stcl", "teacher"}
    per_class = frame[(frame.table == "per_class_IoU") & (frame.method == "ceiling")]
    assert sorted(per_class.value) == [0.6, 0.7]
    assert (out / "per_class_iou.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_tables(metrics, out)["markdown"] == out / "tables.md"  # rerun overwrites atomically


def test_bad_metrics_json_names_the_file(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json: not a readable JSON"):
        write_tables(tmp_path, tmp_path / "out")


def test_params_fill_missing_stcl_dim_tau(tmp_path):
    from stcl.metrics.tables import load_metrics
    from stcl.params import Params

    m = _metrics("train_stcl", 0.5)
    del m["model_info"]
    (tmp_path / "train_stcl.json").write_text(json.dumps(m))
    (loaded,) = load_metrics(tmp_path, Params())
    assert loaded["model_info"]["stcl"] == {"enabled": True, "dim": 64, "tau": 0.07}
    row = _row(build_tables([loaded]), "table3", "Swin-L + STCL", 64)
    assert row.ours["model"] == "train_stcl"


def test_several_seeds_give_mean_and_std_in_markdown_and_parquet(tmp_path):
    seeds = []
    for k, (stcl, teacher) in enumerate(((0.50, 0.60), (0.54, 0.66), (0.58, 0.63))):
        folder = tmp_path / f"seed{k}" / "evaluate"
        folder.mkdir(parents=True)
        for m in (_metrics("train_stcl", stcl, dim=512, tau=0.05), _metrics("teacher", teacher)):
            (folder / f"{m['model']}.json").write_text(json.dumps(m))
        seeds.append(folder)
    out = tmp_path / "tables"
    from stcl.cli import main

    assert main(["tables", "--metrics-dir", *map(str, seeds), "--out-dir", str(out)]) == 0
    md = (out / "tables.md").read_text()
    # mean 0.54, sample std 0.04 (n − 1); the paper's column stays its single run
    assert "| Swin-L + STCL | 512 | 0.05 | train_stcl (ResNet-18, val, 3 seeds) | 0.5876 | 0.5400 ± 0.0400 |" in md
    assert "mean ± sample std (n − 1) over 3 seeds" in md
    frame = pd.read_parquet(out / "tables.parquet")
    teacher = frame[(frame.table == "table4") & (frame.model == "teacher") & (frame.metric == "mIoU")].iloc[0]
    assert teacher.value == pytest.approx(0.63) and teacher["std"] == pytest.approx(0.03) and teacher.seeds == 3
    ceiling = frame[(frame.table == "per_class_IoU") & (frame.method == "ceiling") & (frame.model == "teacher")]
    assert ceiling.value.item() == pytest.approx(0.63)

    # a seed without the teacher: one line naming the folder
    (seeds[2] / "teacher.json").unlink()
    with pytest.raises(ValueError, match=r"seed2/evaluate: models differ from .*seed0/evaluate.* lacks teacher"):
        write_tables(seeds, out)
