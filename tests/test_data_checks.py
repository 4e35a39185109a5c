"""`stcl check-data` and `stcl prepare`: every injected fault is reported, naming its file; nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from _data_fixtures import write_ade, write_coco, write_vspw
from PIL import Image

from stcl.cli import main
from stcl.data import vspw
from stcl.data.checks import check_ade, check_coco, check_dataset, check_vspw, detect_kind
from stcl.data.io import DataError
from stcl.data.prepare import prepare, unlabeled_frame_path
from stcl.params import DataParams, UnlabeledParams


@pytest.fixture()
def datasets(tmp_path):
    return DataParams(
        vspw_root=write_vspw(tmp_path / "VSPW_480p"),
        coco_root=write_coco(tmp_path / "coco"),
        ade_root=write_ade(tmp_path / "ADEChallengeData2016"),
    )


def test_clean_datasets_pass(datasets, capsys):
    for root, kind in ((datasets.vspw_root, "vspw"), (datasets.coco_root, "coco"), (datasets.ade_root, "ade")):
        assert detect_kind(root) == kind
        report = check_dataset(root)
        assert report.ok, report.problems
        assert main(["check-data", str(root)]) == 0
    assert check_vspw(datasets.vspw_root).counts["train"] == {"videos": 2, "frames": 10, "masks": 10}
    assert "OK" in capsys.readouterr().out


def test_vspw_every_fault_reported(datasets, tmp_path, capsys):
    root = datasets.vspw_root
    vspw.frame_path(root, "vid_a", "00000003").unlink()  # missing frame (mask exists)
    vspw.mask_path(root, "vid_a", "00000006").unlink()  # missing mask
    Image.fromarray(np.ones((6, 16), np.uint8), mode="L").save(vspw.mask_path(root, "vid_b", "00000000"))  # size
    Image.fromarray(np.full((12, 16), 130, np.uint8), mode="L").save(vspw.mask_path(root, "vid_b", "00000003"))  # value
    jpg = vspw.frame_path(root, "vid_c", "00000000")
    jpg.write_bytes(jpg.read_bytes()[:200])  # truncated
    (root / "test.txt").write_text("")  # empty split
    (root / "val.txt").write_text("vid_c\n../escape\nsub/dir\n")  # bad names
    (root / "label_num_dic_final.json").write_text('{"others": "0", "wall": "1"}')  # wrong class list
    report = check_vspw(root)
    expected = [
        (str(vspw.frame_path(root, "vid_a", "00000003")), "frame missing"),
        (str(vspw.mask_path(root, "vid_a", "00000006")), "mask missing"),
        (str(vspw.mask_path(root, "vid_b", "00000000")), "mask size (6, 16) differs"),
        (str(vspw.mask_path(root, "vid_b", "00000003")), "mask values [130]"),
        (str(jpg), "unreadable or truncated"),
        (str(root / "test.txt"), "split is empty"),
        (str(root / "val.txt"), "invalid video name '../escape'"),
        (str(root / "val.txt"), "invalid video name 'sub/dir'"),
        (str(root / "label_num_dic_final.json"), "class list differs"),
    ]
    for path, what in expected:
        assert any(p.startswith(path) and what in p for p in report.problems), (path, what, report.problems)
    assert len(report.problems) == len(expected), report.problems
    assert sorted(check_vspw(root, workers=2).problems) == sorted(report.problems)
    assert main(["check-data", str(root), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "9 problem(s)" in out
    assert json.loads((tmp_path / "r.json").read_text())["ok"] is False


def test_coco_faults(datasets):
    root = datasets.coco_root
    doc_path = root / "annotations" / "panoptic_val2017.json"
    doc = json.loads(doc_path.read_text())
    doc["annotations"][0]["segments_info"] = doc["annotations"][0]["segments_info"][:2]  # drop segment 42
    doc_path.write_text(json.dumps(doc))
    (root / "train2017" / "000000000001.jpg").write_bytes(b"garbage")
    problems = check_coco(root).problems
    png = root / "annotations" / "panoptic_val2017" / "000000000001.png"
    assert any(p.startswith(f"{png}: segment ids [42] are absent from the JSON") for p in problems), problems
    assert any(p.startswith(str(root / "train2017" / "000000000001.jpg")) for p in problems), problems
    assert len(problems) == 2


def test_ade_faults(datasets):
    root = datasets.ade_root
    (root / "annotations" / "training" / "ADE_train_00000001.png").unlink()
    Image.fromarray(np.full((12, 16), 200, np.uint8), mode="L").save(root / "annotations/validation/ADE_val_00000002.png")
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(root / "annotations/validation/ADE_val_00000001.png")
    problems = check_ade(root).problems
    assert any("ADE_train_00000001.png: annotation missing" in p for p in problems)
    assert any("ADE_val_00000002.png: annotation values [200]" in p for p in problems)
    assert any("ADE_val_00000001.png: annotation size (5, 5) differs" in p for p in problems)
    assert len(problems) == 3


def test_detect_kind_unknown(tmp_path):
    with pytest.raises(ValueError, match="pass --kind"):
        detect_kind(tmp_path)
    assert main(["check-data", str(tmp_path / "missing")]) == 1


def test_prepare_outputs(datasets, tmp_path):
    out = tmp_path / "prepare"
    report = prepare(datasets, out)
    assert sorted(p.name for p in out.iterdir()) == ["coco_semantic", "report.json", "unlabeled.txt"]
    assert (out / "unlabeled.txt").read_text().splitlines() == [f"vid_d/{t * 3:08d}" for t in range(5)]
    semantic = np.asarray(Image.open(out / "coco_semantic" / "val2017" / "000000000001.png"))
    assert semantic.dtype == np.uint8 and set(np.unique(semantic).tolist()) == {0, 119, 255}
    assert json.loads((out / "report.json").read_text()) == report
    assert report["unlabeled"]["frames"] == 5 and report["coco_semantic"] == {"train2017": 1, "val2017": 1}


def test_prepare_refuses_bad_data_and_keeps_old_output(datasets, tmp_path):
    out = tmp_path / "prepare"
    prepare(datasets, out)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    vspw.mask_path(datasets.vspw_root, "vid_a", "00000000").unlink()
    shutil.rmtree(datasets.ade_root / "images" / "validation")
    with pytest.raises(DataError, match=r"2 problem\(s\)") as err:
        prepare(datasets, out)
    assert "00000000.png: mask missing" in str(err.value) and "validation: directory not found" in str(err.value)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert not [p for p in out.rglob(".*")]  # no temp dir left behind


def test_prepare_cli_keeps_other_files(datasets, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": json.loads(datasets.model_dump_json())}))
    out = tmp_path / "results" / "prepare"
    out.mkdir(parents=True)
    (out / "prepare.log").write_text("log from the workflow")
    assert main(["prepare", "--params", str(params), "--out", str(out)]) == 0
    assert (out / "prepare.log").read_text() == "log from the workflow"
    assert json.loads(capsys.readouterr().out)["coco_semantic"] == {"train2017": 1, "val2017": 1}
    assert sorted(p.name for p in out.iterdir()) == ["coco_semantic", "prepare.log", "report.json", "unlabeled.txt"]


def test_unlabeled_pool_from_folder(datasets, tmp_path):
    folder = tmp_path / "frames"
    for video in ("clip1", "clip2"):
        (folder / video).mkdir(parents=True)
        for t in range(3):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / video / f"{t:05d}.jpg")
    (folder / "clip2" / "00001.jpg").write_bytes(b"broken")
    data = datasets.model_copy(update={"unlabeled": UnlabeledParams(source="folder", folder=folder)})
    with pytest.raises(DataError, match=r"clip2/00001\.jpg: unreadable"):
        prepare(data, tmp_path / "out")
    (folder / "clip2" / "00001.jpg").unlink()
    report = prepare(data, tmp_path / "out")
    lines = (tmp_path / "out" / "unlabeled.txt").read_text().splitlines()
    assert lines == ["clip1/00000", "clip1/00001", "clip1/00002", "clip2/00000", "clip2/00002"]
    assert report["unlabeled"] == {"source": "folder", "splits": None, "root": str(folder), "frames": 5, "videos": 2}
    assert unlabeled_frame_path(data, lines[-1]) == folder / "clip2" / "00002.jpg"
    assert unlabeled_frame_path(datasets, "vid_d/00000003") == vspw.frame_path(datasets.vspw_root, "vid_d", "00000003")
    with pytest.raises(ValueError, match="<video>/<frame stem>"):
        unlabeled_frame_path(data, "no-slash")


# Root reads a mode-000 file through two capabilities (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). Dropping them
# from the bounding and inheritable sets keeps root's uid, so the checkout, the venv and the interpreter stay
# readable wherever they sit (a 0700 folder such as /root or a `mktemp -d` clone), while chmod 000 denies
# the data for real (capabilities(7): without those two, root is an owner like any other).
DROP_DAC_READ = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                 "--bounding-set=-dac_override,-dac_read_search"]


def _check_data_unprivileged(root: Path) -> subprocess.CompletedProcess:
    """`stcl check-data ROOT` as a user whom chmod 000 denies: root without its two read-override capabilities."""
    cmd = [sys.executable, "-m", "stcl", "check-data", str(root)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop the capabilities that override chmod 000")
        cmd = [*DROP_DAC_READ, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())


def test_permission_denied_is_one_more_problem_not_a_stop(tmp_path):
    """An unreadable video folder and an unreadable split file are reported beside the other problems."""
    top = tmp_path
    try:
        os.chmod(top, 0o755)
        root = write_vspw(top / "VSPW_480p", {"train": ["vid_a", "vid_b"], "val": ["vid_c"], "test": ["vid_d"]})
        for path in [root, *root.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        (root / "data" / "vid_a" / "mask" / "00000003.png").unlink()  # an ordinary problem elsewhere
        os.chmod(root / "data" / "vid_b", 0o000)
        os.chmod(root / "val.txt", 0o000)
        done = _check_data_unprivileged(root)
    finally:
        for path in (top / "VSPW_480p" / "data" / "vid_b", top / "VSPW_480p" / "val.txt"):
            if path.exists():
                os.chmod(path, 0o755)
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""  # no traceback, no "error:" line: a report
    lines = done.stdout.splitlines()
    assert f"{root / 'val.txt'}: cannot read (Permission denied)" in lines
    assert any(line.startswith(f"{root / 'data' / 'vid_b'}") and line.endswith("cannot read (Permission denied)")
               for line in lines), lines
    assert f"{vspw.mask_path(root, 'vid_a', '00000003')}: mask missing (frame 00000003.jpg exists)" in lines
    assert lines[-1].startswith(f"check-data vspw {root}: 3 problem(s)")
    assert "train: 2 videos 5 frames 4 masks" in lines[-1]  # vid_a still counted; vid_b could not be read
