"""A full disk, for real: every artifact kind written into a small tmpfs ends in one line naming the path,
exit 1, and no temporaries or empty folders left behind (needs root to mount; see small_tmpfs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _hardening_fixtures import leftovers, make_workspace, small_tmpfs, write_params

from stcl.cli import EXIT_USER_ERROR, main

pytestmark = pytest.mark.slow

FULL = "no space left on device (free some space (complete outputs are kept) and run the same command again)"


@pytest.fixture(scope="module")
def workspace(module_tmp):
    """Synthetic data, prepare outputs, a model file, val and test predictions; cwd during the tests."""
    root = make_workspace(module_tmp("full_disk_ws"))
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        for split in ("val", "test"):
            argv = ["infer", "--checkpoint", "m=model.pt", "--root", "data/VSPW_480p", "--split", split]
            assert main([*argv, "--output", f"m=m=pred/{split}", "--device", "cpu"]) == 0
        yield root
    finally:
        mp.undo()


def _one_line_naming(capsys, command: str, mount: Path) -> str:
    """The one error line of a disk-full failure (the last on stderr; progress lines may come before it, no
    traceback); returns the path it names."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and sum("error" in line for line in lines) == 1, lines
    m = re.fullmatch(rf"stcl {command}: error: (\S+): {re.escape(FULL)}", lines[-1])
    assert m, lines[-1]
    assert Path(m.group(1)).is_relative_to(mount) and ".tmp" not in m.group(1)
    return m.group(1)


def test_synth(tmp_path, capsys) -> None:
    params = write_params(tmp_path)
    with small_tmpfs(tmp_path / "disk", "256k") as disk:
        assert main(["synth", "--out", str(disk / "data"), "--params", str(params)]) == EXIT_USER_ERROR
        _one_line_naming(capsys, "synth", disk)
        assert leftovers(disk) == []


def test_prepare(workspace, tmp_path, capsys) -> None:
    with small_tmpfs(tmp_path / "disk", "8k") as disk:
        (disk / "filler").write_bytes(b"x" * 4096)  # one page left: the first reports fit, the rest does not
        assert main(["prepare", "--out", str(disk / "prepare")]) == EXIT_USER_ERROR
        _one_line_naming(capsys, "prepare", disk)
        assert leftovers(disk) == []


def test_train_checkpoint(workspace, tmp_path, capsys) -> None:
    """The resume checkpoint (torch.save: a RuntimeError without errno on a full disk) does not fit."""
    params = write_params(tmp_path, iters=2, checkpoint_every=1)
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "train_stcl"
        argv = ["train", "--stage", "train_stcl", "--params", str(params), "--out", str(out), "--device", "cpu"]
        assert main(argv) == EXIT_USER_ERROR
        assert _one_line_naming(capsys, "train", disk) == str(out / "state" / "iter_00000001.pt")
        assert leftovers(disk) == [] and not (out / "train.lock").exists()


def test_infer_predictions(workspace, tmp_path, capsys) -> None:
    with small_tmpfs(tmp_path / "disk", "16k") as disk:
        argv = ["infer", "--checkpoint", "m=model.pt", "--root", "data/VSPW_480p", "--split", "val"]
        argv += ["--output", f"m=m={disk / 'pred'}", "--device", "cpu"]
        assert main(argv) == EXIT_USER_ERROR
        named = Path(_one_line_naming(capsys, "infer", disk))
        assert named.parent.parent == disk / "pred" and named.suffix == ".png"  # <out>/<video>/<frame>.png
        assert leftovers(disk) == []  # the unfinished video folder is gone, and so is the empty <out>


def test_evaluate_metrics(workspace, tmp_path, capsys) -> None:
    with small_tmpfs(tmp_path / "disk", "4k") as disk:
        (disk / "filler").write_bytes(b"x" * 4096)  # the file system is full before the command starts
        out = disk / "metrics" / "model.json"
        argv = ["evaluate", "--gt-root", "data/VSPW_480p", "--pred-root", "pred/val", "--split", "val"]
        argv += ["--out", str(out)]
        assert main(argv) == EXIT_USER_ERROR
        assert _one_line_naming(capsys, "evaluate", disk) == str(out)
        assert leftovers(disk) == [] and not (disk / "metrics").exists()


def test_submit_zip(workspace, tmp_path, capsys) -> None:
    with small_tmpfs(tmp_path / "disk", "8k") as disk:
        out = disk / "sub" / "test_submission.zip"
        assert main(["submit", "--pred", "pred/test", "--root", "data/VSPW_480p", "--out", str(out)]) == EXIT_USER_ERROR
        assert _one_line_naming(capsys, "submit", disk) == str(out)
        assert leftovers(disk) == [] and not (disk / "sub").exists()
