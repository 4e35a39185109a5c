"""`evaluate_dirs` / `stcl evaluate` on PNG files: parity with the in-memory API, worker invariance, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stcl.metrics import evaluate_arrays, evaluate_dirs

PALETTE = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]


def _png(path: Path, array: np.ndarray, palette: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array, mode="L")
    if palette:
        img = img.convert("P")
        img.putpalette(PALETTE)
    img.save(path)


@pytest.fixture(scope="module")
def dataset(module_tmp):
    """GT root (raw ids, palette masks) + prediction root (mode L) with 4 videos of 9..20 frames, 12x10."""
    root = module_tmp("metrics")
    gt_root, pred_root = root / "VSPW", root / "pred"
    rng = np.random.default_rng(1)
    videos, arrays = [f"vid_{i}" for i in range(4)], {}
    for v, length in zip(videos, (9, 17, 20, 12)):
        gts, preds = [], []
        base = rng.choice(np.array([0, 1, 2, 5, 124, 255], dtype=np.uint8), size=(10, 12))
        for t in range(length):
            raw = base.copy()
            raw[rng.random(raw.shape) < 0.05] = 3
            pred = np.where(rng.random(raw.shape) < 0.1, rng.integers(0, 124, raw.shape), (raw - 1) % 124)
            pred = pred.astype(np.uint8)
            stem = f"{t * 5:08d}"
            _png(gt_root / "data" / v / "mask" / f"{stem}.png", raw, palette=True)
            _png(pred_root / v / f"{stem}.png", pred, palette=False)
            gts.append(np.where((raw == 0) | (raw == 255), 255, raw - 1).astype(np.uint8))
            preds.append(pred)
        arrays[v] = (gts, preds)
    (gt_root / "val.txt").write_text("\n".join(videos))  # no trailing newline, on purpose
    return gt_root, pred_root, arrays


def test_files_match_in_memory_api(dataset):
    gt_root, pred_root, arrays = dataset
    files = evaluate_dirs(gt_root, pred_root, "val", workers=1)
    memory = evaluate_arrays(arrays)
    assert files.to_dict() == memory.to_dict()
    assert files.videos == 4 and files.frames == 9 + 17 + 20 + 12
    assert files.vc_videos == {8: 4, 16: 2}  # 9 > 8 but 9, 12 <= 16
    assert files.vc_windows == {8: 1 + 9 + 12 + 4, 16: 1 + 4}


def test_worker_count_does_not_change_results(dataset):
    gt_root, pred_root, _ = dataset
    one = evaluate_dirs(gt_root, pred_root, "val", workers=1).to_dict()
    two = evaluate_dirs(gt_root, pred_root, "val", workers=2).to_dict()
    assert one == two


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_prediction_frames_are_counted_and_the_first_named(dataset, tmp_path):
    gt_root, pred_root, _ = dataset
    pred = _copy_tree(pred_root, tmp_path / "pred")
    (pred / "vid_2" / "00000015.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"pred: 1 predictions missing for frames of 1 video\(s\) \(first: "
                       r"vid_2/00000015\.png\)$"):
        evaluate_dirs(gt_root, pred, "val", workers=2)
    for name in ("00000000.png", "00000005.png", "00000010.png"):
        (pred / "vid_1" / name).unlink()
    with pytest.raises(FileNotFoundError, match=r"pred: 4 predictions missing for frames of 2 video\(s\) \(first: "
                       r"vid_1/00000000\.png, vid_1/00000005\.png, vid_1/00000010\.png, …\)$"):
        evaluate_dirs(gt_root, pred, "val", workers=2)


def test_size_mismatch_names_the_file(dataset, tmp_path):
    gt_root, pred_root, _ = dataset
    pred = _copy_tree(pred_root, tmp_path / "pred")
    _png(pred / "vid_1" / "00000010.png", np.zeros((10, 13), np.uint8), palette=True)
    with pytest.raises(ValueError, match=r"vid_1/00000010\.png: prediction size 13x10 != GT size 12x10"):
        evaluate_dirs(gt_root, pred, "val", workers=1)


def test_prediction_value_outside_range_names_the_file(dataset, tmp_path):
    gt_root, pred_root, _ = dataset
    pred = _copy_tree(pred_root, tmp_path / "pred")
    bad = np.zeros((10, 12), np.uint8)
    bad[3, 4] = 124
    _png(pred / "vid_0" / "00000000.png", bad, palette=True)
    with pytest.raises(ValueError, match=r"vid_0/00000000\.png: prediction values \[124\] outside 0\.\.123"):
        evaluate_dirs(gt_root, pred, "val", workers=1)


def test_rgb_prediction_is_rejected(dataset, tmp_path):
    gt_root, pred_root, _ = dataset
    pred = _copy_tree(pred_root, tmp_path / "pred")
    Image.new("RGB", (12, 10)).save(pred / "vid_3" / "00000005.png")
    with pytest.raises(ValueError, match=r"vid_3/00000005\.png: expected a single-channel PNG"):
        evaluate_dirs(gt_root, pred, "val", workers=1)


def test_cli_writes_json_and_never_imports_torch(dataset, tmp_path):
    gt_root, pred_root, _ = dataset
    out = tmp_path / "metrics" / "train_stcl.json"
    details = tmp_path / "details" / "train_stcl.json"
    code = (
        "import sys; from stcl.cli import main; "
        f"rc = main(['evaluate', '--gt-root', {str(gt_root)!r}, '--pred-root', {str(pred_root)!r}, "
        f"'--out', {str(out)!r}, '--details', {str(details)!r}, '--params', 'params.yaml', '--workers', '2']); "
        "assert 'torch' not in sys.modules, 'stcl evaluate imported torch'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    headline = json.loads(out.read_text())  # what `dvc metrics show` lists: five figures, nothing else
    assert list(headline) == ["mIoU", "WIoU", "VC8", "VC16", "pixel_accuracy"]
    data = json.loads(details.read_text())
    for key in ("mIoU", "WIoU", "VC8", "VC16"):
        assert 0.0 <= data[key] <= 1.0 and data[key] == headline[key]
    assert len(data["per_class_IoU"]) == 124 and data["per_class_IoU"]["wall"] is not None
    assert data["model"] == "train_stcl" and data["videos"] == 4 and data["frames"] == 58
    assert data["model_info"]["stcl"]["enabled"] is True and "backbone" in data
    assert sum(data["gt_class_pixels"].values()) + data["void_pixels"] == 58 * 120


def test_cli_error_is_one_line_naming_the_file(dataset, tmp_path):
    gt_root, _, _ = dataset
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stcl",
            "evaluate",
            "--gt-root",
            str(gt_root),
            "--pred-root",
            str(tmp_path),
            "--out",
            str(tmp_path / "m.json"),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 1
    assert "stcl evaluate: error:" in proc.stderr and "predictions missing for frames of" in proc.stderr
    assert "(first: vid_0/00000000.png, " in proc.stderr
    assert not (tmp_path / "m.json").exists()


def test_cli_works_without_a_params_file(dataset, tmp_path):
    """`stcl evaluate` is a standalone tool: run outside the repository, no params.yaml anywhere."""
    gt_root, pred_root, _ = dataset
    out = tmp_path / "m.json"
    proc = subprocess.run(
        [sys.executable, "-m", "stcl", "evaluate", "--gt-root", str(gt_root), "--pred-root", str(pred_root),
         "--out", str(out), "--details", str(tmp_path / "d.json"), "--workers", "1"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(out.read_text())) == {"mIoU", "WIoU", "VC8", "VC16", "pixel_accuracy"}
    assert json.loads((tmp_path / "d.json").read_text())["model_info"] == {}


def test_out_that_is_a_directory_is_named_not_its_temporary(dataset, tmp_path, capsys):
    from stcl.cli import main

    gt_root, pred_root, _ = dataset
    out = tmp_path / "metrics"
    out.mkdir()
    argv = ["evaluate", "--gt-root", str(gt_root), "--pred-root", str(pred_root), "--out", str(out), "--workers", "1"]
    assert main(argv) == 1
    assert capsys.readouterr().err == f"stcl evaluate: error: {out}: is a directory; name the file to write\n"
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["metrics"]
