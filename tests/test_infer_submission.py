"""`stcl submit`: validation errors and the zip layout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _data_fixtures import write_vspw_root
from PIL import Image

from stcl.cli import main
from stcl.infer.io import save_label_png
from stcl.infer.submission import SubmissionError, collect_entries, validate_predictions, write_zip

VIDEOS = {"v1": (2, 12, 16), "v2": (3, 10, 8)}


@pytest.fixture()
def case(tmp_path: Path):
    root = write_vspw_root(tmp_path / "VSPW", VIDEOS, split="test")
    pred = tmp_path / "pred"
    rng = np.random.default_rng(0)
    for video, (n, h, w) in VIDEOS.items():
        for i in range(n):
            save_label_png(pred / video / f"{i:08d}.png", rng.integers(0, 124, (h, w)).astype(np.uint8))
    return root, pred, tmp_path / "out" / "sub.zip"


def test_zip_holds_exactly_video_frame_pngs(case):
    root, pred, out = case
    (pred / "v1" / "extra.png").write_bytes(b"not part of the split")
    assert main(["submit", "--pred", str(pred), "--root", str(root), "--split", "test", "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names == [f"v1/{i:08d}.png" for i in range(2)] + [f"v2/{i:08d}.png" for i in range(3)]
        for name in names:
            assert not name.startswith("/") and ".." not in name.split("/")
            assert zf.read(name) == (pred / name).read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["sub.zip"]  # no temporary left


def test_validator_lists_every_problem(case):
    root, pred, out = case
    (pred / "v2" / "00000001.png").unlink()  # missing
    save_label_png(pred / "v1" / "00000000.png", np.zeros((12, 15), np.uint8))  # wrong size
    save_label_png(pred / "v2" / "00000000.png", np.full((10, 8), 124, np.uint8))  # id out of range
    Image.fromarray(np.zeros((10, 8, 3), np.uint8)).save(pred / "v2" / "00000002.png")  # RGB
    with pytest.raises(SubmissionError) as err:
        validate_predictions(collect_entries(pred, root, "test"))
    msg = str(err.value)
    assert msg.startswith("4 of 5 test predictions invalid (1 missing)")
    assert "v2/00000001.png: missing" in msg
    assert "v1/00000000.png: size 12x15 (HxW)" in msg
    assert "class id 124 outside 0..123" in msg
    assert "mode RGB" in msg
    assert main(["submit", "--pred", str(pred), "--root", str(root), "--out", str(out)]) == 1
    assert not out.exists()


def test_validator_shows_first_problems_and_count(case):
    root, pred, _ = case
    for p in pred.glob("*/*.png"):
        p.unlink()
    with pytest.raises(SubmissionError, match=r"(?s)5 of 5 .*\(5 missing\).*\.\.\. and 3 more"):
        validate_predictions(collect_entries(pred, root, "test"), show=2)


def test_l_mode_png_is_accepted_and_write_is_atomic(case, tmp_path: Path):
    root, pred, out = case
    Image.fromarray(np.full((12, 16), 123, np.uint8), mode="L").save(pred / "v1" / "00000001.png")
    entries = collect_entries(pred, root, "test")
    validate_predictions(entries)
    out.parent.mkdir(parents=True)
    out.write_bytes(b"old")
    (pred / "v2" / "00000002.png").unlink()  # fails mid-way: the old zip stays, no temporary left
    with pytest.raises(FileNotFoundError):
        write_zip(entries, out)
    assert out.read_bytes() == b"old" and [p.name for p in out.parent.iterdir()] == ["sub.zip"]


def test_submit_does_not_import_torch(case):
    root, pred, out = case
    code = (
        "import sys; from stcl.cli import main; "
        f"rc = main(['submit', '--pred', {str(pred)!r}, '--root', {str(root)!r}, '--out', {str(out)!r}]); "
        "print(rc, 'torch' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert res.split()[-2:] == ["0", "False"]
