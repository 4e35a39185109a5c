"""`stcl` exit codes and one-line errors, with the faults injected in-process (runs anywhere, no root).

The same faults on a real full file system and real signals to real subprocesses are in
test_hardening_full_disk.py and test_hardening_signals.py.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
from _data_fixtures import write_vspw

import stcl.atomic
from stcl.cli import EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_USER_ERROR, error_line, main, output_paths


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_names_the_final_path_and_removes_the_new_folders(tmp_path, monkeypatch, capsys) -> None:
    root = write_vspw(tmp_path / "VSPW_480p")
    report = tmp_path / "new" / "sub" / "report.json"
    monkeypatch.setattr(stcl.atomic.os, "replace", _enospc)  # the rename of the finished temporary fails
    assert main(["check-data", str(root), "--json", str(report)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"stcl check_data: error: {report}: no space left on device (free some space (complete "
                   "outputs are kept) and run the same command again)"]
    assert not (tmp_path / "new").exists()  # the folders it created are gone again, temporaries too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VSPW_480p"]


def test_torch_style_write_failure_on_a_nearly_full_disk_is_enospc(tmp_path, monkeypatch) -> None:
    """torch.save's C++ writer raises RuntimeError('... unexpected pos ...') without errno on a full disk."""

    class NearlyFull:
        f_bavail, f_frsize = 3, 4096

    monkeypatch.setattr(stcl.atomic.os, "statvfs", lambda path: NearlyFull())
    dst = tmp_path / "a" / "iter_00000004.pt"
    with pytest.raises(OSError) as info, stcl.atomic.atomic_path(dst) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(dst)
    assert list(tmp_path.iterdir()) == []  # temporary and the created parent removed


def test_torch_save_on_a_full_disk_is_enospc_whatever_space_is_left_afterwards(tmp_path, monkeypatch) -> None:
    """torch's writer turns the ENOSPC of its write into a RuntimeError; `write_stream` raises the ENOSPC even
    when the file system shows free space by the time the error is handled (another process freed some)."""
    import torch

    real_open = open

    class FillsUp:  # the file system takes 4 KiB of this file, then reports ENOSPC
        def __init__(self, raw) -> None:
            self.raw, self.n = raw, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.raw.close()

        def write(self, data) -> int:
            if self.n + len(data) > 4096:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.n += len(data)
            return self.raw.write(data)

        def flush(self) -> None:
            self.raw.flush()

    monkeypatch.setattr(stcl.atomic, "open", lambda path, mode: FillsUp(real_open(path, mode)), raising=False)
    dst = tmp_path / "m" / "model.pt"
    with pytest.raises(OSError) as info:
        stcl.atomic.write_stream(dst, lambda f: torch.save({"w": torch.zeros(100_000)}, f))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(dst)
    assert list(tmp_path.iterdir()) == []  # no temporary, no new folder
    with pytest.raises(RuntimeError, match="unexpected pos"):  # what torch.save alone reports
        with real_open(tmp_path / "x.pt", "wb") as raw, FillsUp(raw) as f:
            torch.save({"w": torch.zeros(100_000)}, f)


def test_write_stream_writes_what_torch_save_writes(tmp_path) -> None:
    import torch

    obj = {"w": torch.arange(12.0).reshape(3, 4), "meta": {"a": [1, 2]}}
    stcl.atomic.write_stream(tmp_path / "a.pt", lambda f: torch.save(obj, f))
    back = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(back["w"], obj["w"]) and back["meta"] == obj["meta"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_runtime_error_with_free_space_is_not_mistaken_for_a_full_disk(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="a bug"), stcl.atomic.atomic_path(tmp_path / "x") as tmp:
        tmp.write_bytes(b"1")
        raise RuntimeError("a bug")


def test_atomic_dir_names_the_file_inside_the_final_folder(tmp_path) -> None:
    final = tmp_path / "pred" / "video_1"
    with pytest.raises(OSError) as info, stcl.atomic.atomic_dir(final) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "00000003.png"))
    assert info.value.filename == str(final / "00000003.png")
    assert not (tmp_path / "pred").exists()


def test_ctrl_c_in_a_command_is_one_line_and_130(tmp_path, monkeypatch, capsys) -> None:
    import stcl.commands.check_data as command

    def interrupted(args):
        (Path(args.json).parent / "deeper").mkdir(parents=True)  # a folder made before the interrupt
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run", interrupted)
    out = tmp_path / "made" / "r.json"
    assert main(["check-data", str(tmp_path), "--json", str(out)]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "stcl check_data: interrupted (SIGINT); no partial output kept\n"
    assert not (tmp_path / "made").exists()


def test_sigterm_in_a_command_is_one_line_and_75(tmp_path, monkeypatch, capsys) -> None:
    import stcl.commands.check_data as command

    monkeypatch.setattr(command, "run", lambda args: os.kill(os.getpid(), signal.SIGTERM) or 0)
    assert main(["check-data", str(tmp_path)]) == EXIT_PREEMPTED
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("stcl check_data: stopped by SIGTERM;")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored after main


def test_output_paths_and_error_lines() -> None:
    import argparse

    args = argparse.Namespace(out="a", out_dir=Path("b"), json=None, params="params.yaml", outline="x")
    assert output_paths(args) == [Path("a"), Path("b")]
    denied = PermissionError(errno.EACCES, "Permission denied", "/data/x.txt")
    assert error_line(denied, []) == "/data/x.txt: Permission denied"
    assert error_line(OSError(errno.ENOSPC, "No space left on device"), [Path("results/m")]).startswith(
        "results/m: no space left on device"
    )
    assert error_line(ValueError("params.yaml: infer.models: empty"), []) == "params.yaml: infer.models: empty"


@pytest.mark.parametrize("value", [None, "", "0", " 0 "])
def test_stcl_debug_unset_empty_or_0_keeps_the_one_line_error(tmp_path, monkeypatch, capsys, value) -> None:
    if value is None:
        monkeypatch.delenv("STCL_DEBUG", raising=False)
    else:
        monkeypatch.setenv("STCL_DEBUG", value)
    missing = tmp_path / "nowhere.yaml"
    assert main(["params", "--params", str(missing)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"stcl params: error: {missing}"), err


def test_stcl_debug_1_shows_the_traceback(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STCL_DEBUG", "1")
    with pytest.raises((ValueError, OSError), match="nowhere.yaml"):
        main(["params", "--params", str(tmp_path / "nowhere.yaml")])
