"""`stcl evaluate` reads the GT through the dataset reader (`stcl.data.vspw`, `stcl.data.io`): its rules, one line each.

The split file, the video names and the mask files follow the stricter of the two rule sets the evaluation and
the dataset reader once had apart: hidden or path-like names are refused, a truncated or RGB mask names itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stcl.cli import main
from stcl.data.io import DataError
from stcl.metrics import evaluate_dirs


def _roots(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "VSPW", tmp_path / "pred"
    for video in ("vid_a", "vid_b"):
        for t in range(3):
            raw = np.full((6, 8), 1 + t, np.uint8)
            (gt / "data" / video / "mask").mkdir(parents=True, exist_ok=True)
            (pred / video).mkdir(parents=True, exist_ok=True)
            Image.fromarray(raw, mode="L").save(gt / "data" / video / "mask" / f"{t:08d}.png")
            Image.fromarray(raw - 1, mode="L").save(pred / video / f"{t:08d}.png")
    (gt / "val.txt").write_text("vid_a\nvid_b\n")
    return gt, pred


def _evaluate(gt: Path, pred: Path, tmp_path: Path, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["evaluate", "--gt-root", str(gt), "--pred-root", str(pred), "--out", str(tmp_path / "m.json"),
                 "--workers", "1"])
    return code, capsys.readouterr().err.strip().splitlines()


def test_good_roots_evaluate(tmp_path):
    gt, pred = _roots(tmp_path)
    result = evaluate_dirs(gt, pred, "val")
    assert result.mIoU == 1.0 and result.frames == 6


@pytest.mark.parametrize("name", [".hidden", "../vid_a", "a/b"])
def test_bad_video_name_in_the_split_file_is_one_line(tmp_path, capsys, name):
    gt, pred = _roots(tmp_path)
    (gt / "val.txt").write_text(f"vid_a\n{name}\n")
    with pytest.raises(DataError, match=rf"{gt / 'val.txt'}: invalid video name"):
        evaluate_dirs(gt, pred, "val")
    code, err = _evaluate(gt, pred, tmp_path, capsys)
    assert code == 1 and len(err) == 1 and str(gt / "val.txt") in err[0], err
    assert not (tmp_path / "m.json").exists()


def test_video_listed_twice_is_refused(tmp_path):
    gt, pred = _roots(tmp_path)
    (gt / "val.txt").write_text("vid_a\nvid_b\nvid_a\n")
    with pytest.raises(DataError, match=r"val\.txt: video 'vid_a' listed twice"):
        evaluate_dirs(gt, pred, "val")


@pytest.mark.parametrize("damage", ["truncated", "rgb"])
def test_damaged_gt_mask_is_one_line_naming_it(tmp_path, capsys, damage):
    gt, pred = _roots(tmp_path)
    mask = gt / "data" / "vid_b" / "mask" / "00000001.png"
    if damage == "truncated":
        mask.write_bytes(mask.read_bytes()[:40])
        want = "unreadable or truncated"
    else:
        Image.new("RGB", (8, 6)).save(mask)
        want = "expected a single-channel PNG"
    code, err = _evaluate(gt, pred, tmp_path, capsys)
    assert code == 1 and len(err) == 1 and str(mask) in err[0] and want in err[0], err
    assert not (tmp_path / "m.json").exists()


def test_video_without_masks_names_its_folder(tmp_path):
    gt, pred = _roots(tmp_path)
    for path in (gt / "data" / "vid_b" / "mask").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=rf"{gt / 'data' / 'vid_b' / 'mask'}: no \.png GT masks"):
        evaluate_dirs(gt, pred, "val")
