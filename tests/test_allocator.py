"""`stcl.allocator`: glibc's mallopt is applied where it exists, never over the user's own settings (``MALLOC_*``
variables, ``glibc.malloc.*`` tunables), and an unknown word in ``STCL_MALLOC_TUNING`` is refused in one line."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from stcl.allocator import keep_large_blocks, user_tunables
from stcl.cli import main
from stcl.numerics import NumericsError


def test_off_switch_and_user_settings_win():
    assert keep_large_blocks({"STCL_MALLOC_TUNING": "0"}) is False
    assert keep_large_blocks({"STCL_MALLOC_TUNING": "Off"}) is False
    assert keep_large_blocks({"MALLOC_ARENA_MAX": "2"}) is False
    # glibc's tunables are the other way to set the same things: mallopt would override them
    assert keep_large_blocks({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}) is False
    assert keep_large_blocks({"GLIBC_TUNABLES": "glibc.rtld.nns=8:glibc.malloc.trim_threshold=0"}) is False
    assert user_tunables({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}) == []


@pytest.mark.parametrize("word", ["disable", "none", "-1"])
def test_an_unknown_word_is_refused_naming_the_variable(word, monkeypatch, capsys, tmp_path):
    with pytest.raises(NumericsError, match=rf"^STCL_MALLOC_TUNING={word!r} is not an on/off word: use one of 0, "):
        keep_large_blocks({"STCL_MALLOC_TUNING": word})
    # through the command line: one line, exit 1, before anything is read
    monkeypatch.setenv("STCL_MALLOC_TUNING", word)
    assert main(["infer", "--root", str(tmp_path / "absent"), "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"stcl infer: error: STCL_MALLOC_TUNING={word!r}")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings exist in glibc only")
def test_glibc_takes_the_settings_and_the_inference_commands_apply_them():
    assert keep_large_blocks({}) is True
    assert keep_large_blocks({"GLIBC_TUNABLES": "glibc.pthread.rseq=0", "STCL_MALLOC_TUNING": "yes"}) is True
    # the three inference commands call it before their frame loop
    code = (
        "import inspect; from stcl.commands import infer, pseudo_label, predict; "
        "print(all('keep_large_blocks()' in inspect.getsource(m.run) for m in (infer, pseudo_label, predict)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
