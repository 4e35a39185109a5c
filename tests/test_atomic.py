"""stcl.atomic: files and folders renamed into place, nothing left behind on error."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stcl.atomic import (
    atomic_dir,
    atomic_path,
    copy_file,
    remove_stale_tmp,
    tmp_owner,
    write_bytes,
    write_json,
    write_text,
)


def test_atomic_path_replaces_file_with_0644(tmp_path: Path) -> None:
    dst = tmp_path / "sub" / "a.bin"
    with atomic_path(dst) as tmp:
        assert tmp.parent == dst.parent and tmp.name.startswith(".a.bin.") and tmp.name.endswith(".tmp")
        assert tmp.is_file() and not dst.exists()
        tmp.write_bytes(b"new")
    assert dst.read_bytes() == b"new"
    assert stat.S_IMODE(dst.stat().st_mode) == 0o644
    assert [p.name for p in dst.parent.iterdir()] == ["a.bin"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_path_error_keeps_old_file_and_leaves_no_temp(tmp_path: Path, exc: type[BaseException]) -> None:
    dst = tmp_path / "a.txt"
    dst.write_text("old")
    with pytest.raises(exc), atomic_path(dst, fsync=True) as tmp:
        tmp.write_text("half")
        raise exc()
    assert dst.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_writers(tmp_path: Path) -> None:
    write_bytes(tmp_path / "b", b"\x00\x01")
    write_text(tmp_path / "t", "é\n")
    write_json(tmp_path / "j.json", {"b": 1, "a": [1.5, None]})
    write_json(tmp_path / "s.json", {"b": 1, "a": 2}, sort_keys=True)
    copy_file(tmp_path / "t", tmp_path / "c")
    assert (tmp_path / "b").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t").read_bytes() == "é\n".encode()
    assert (tmp_path / "j.json").read_text() == json.dumps({"b": 1, "a": [1.5, None]}, indent=2) + "\n"
    assert (tmp_path / "s.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert (tmp_path / "c").read_text() == "é\n"
    with pytest.raises(ValueError):
        write_json(tmp_path / "j.json", {"x": float("nan")}, allow_nan=False)
    assert json.loads((tmp_path / "j.json").read_text())["b"] == 1
    with pytest.raises(FileNotFoundError, match="missing: file not found"):
        copy_file(tmp_path / "missing", tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c", "j.json", "s.json", "t"]


def test_atomic_dir_creates_and_replaces(tmp_path: Path) -> None:
    final = tmp_path / "out" / "v.1"
    with atomic_dir(final) as tmp:
        assert tmp.name.startswith(".v.1.") and tmp.name.endswith(".tmp") and not final.exists()
        (tmp / "a").write_text("1")
    assert stat.S_IMODE(final.stat().st_mode) == 0o755
    with atomic_dir(final) as tmp:
        (tmp / "b").write_text("2")
        assert (final / "a").is_file()  # the old folder stays until the body is done
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    assert [p.name for p in final.parent.iterdir()] == ["v.1"]


def test_atomic_dir_error_keeps_old_folder(tmp_path: Path) -> None:
    final = tmp_path / "v"
    final.mkdir()
    (final / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError
    assert (final / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["v"]


def test_remove_stale_tmp_only_touches_named_owners(tmp_path: Path) -> None:
    assert tmp_owner(".v.1.ab12cd.tmp") == "v.1" and tmp_owner("v.tmp") is None and tmp_owner(".v") is None
    (tmp_path / ".v1.dead.tmp").mkdir()
    (tmp_path / ".v1.x.tmp").write_text("")
    (tmp_path / ".v2.busy.tmp").mkdir()  # another shard's work in progress
    (tmp_path / "v3").mkdir()
    (tmp_path / ".hidden").write_text("")
    removed = remove_stale_tmp(tmp_path, {"v1", "v3"})
    assert sorted(p.name for p in removed) == [".v1.dead.tmp", ".v1.x.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", ".v2.busy.tmp", "v3"]
    assert [p.name for p in remove_stale_tmp(tmp_path)] == [".v2.busy.tmp"]
    assert remove_stale_tmp(tmp_path / "missing") == []


def test_kill_leaves_only_a_hidden_temp(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys; from stcl.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('half'); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    dst = tmp_path / "f.txt"
    dst.write_text("old")
    subprocess.run([sys.executable, "-c", code, str(dst)], check=False)
    assert dst.read_text() == "old"
    assert [p.name for p in remove_stale_tmp(tmp_path, {"f.txt"})] != []
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_no_heavy_imports() -> None:
    code = "import sys, stcl.atomic; print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
