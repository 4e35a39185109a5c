"""`stcl.allocator`: glibc's mallopt is applied where it exists, and never over the user's own settings."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from stcl.allocator import keep_large_blocks


def test_off_switch_and_user_settings_win():
    assert keep_large_blocks({"STCL_MALLOC_TUNING": "0"}) is False
    assert keep_large_blocks({"MALLOC_ARENA_MAX": "2"}) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings exist in glibc only")
def test_glibc_takes_the_settings_and_the_inference_commands_apply_them():
    assert keep_large_blocks({}) is True
    # the three inference commands call it before their frame loop
    code = (
        "import inspect; from stcl.commands import infer, pseudo_label, predict; "
        "print(all('keep_large_blocks()' in inspect.getsource(m.run) for m in (infer, pseudo_label, predict)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
