"""glibc malloc settings for the inference commands: keep large blocks instead of returning them to the
kernel and faulting them in again.

The frame loop (`stcl.infer.frames`) allocates and frees blocks of tens of MB per view (window batches,
logit sums, probabilities of a group of frames). glibc serves blocks above its mmap threshold (dynamic, at
most 32 MiB) with fresh ``mmap`` pages and trims the heap top on free, so every such block costs page
faults and kernel zeroing again. Measured with `benchmarks/inference_speed.py` at the embedded geometry
(96×128 frames, 64 window, six scales + flip, 1 thread): the frame loop ran at 0.89-0.95× the frames per
CPU second of a padded per-frame loop with glibc's defaults, and at 1.04-1.06× with these settings.

`keep_large_blocks` sets ``M_MMAP_THRESHOLD`` 32 MiB, ``M_TRIM_THRESHOLD`` 4 GiB and ``M_TOP_PAD`` 256 MiB with
``mallopt`` (what ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
MALLOC_TOP_PAD_=268435456`` would set at start-up). The cost: the process keeps its peak heap instead of
returning freed memory. Nothing computed changes. Skipped on other C libraries and platforms, when the user
set any ``MALLOC_*`` variable or any ``glibc.malloc.*`` tunable in ``GLIBC_TUNABLES`` (``mallopt`` would
override them: the user's own allocator settings win), or with ``STCL_MALLOC_TUNING=0`` (an on/off word of
`stcl.numerics.switch`; any other word is refused in one line).
"""

from __future__ import annotations

import ctypes
import os
import sys

from stcl.numerics import switch

__all__ = ["ENV", "SETTINGS", "keep_large_blocks", "user_tunables"]

ENV = "STCL_MALLOC_TUNING"
# mallopt parameter numbers of glibc's malloc.h: (name, number, value)
SETTINGS = (("M_MMAP_THRESHOLD", -3, 32 << 20), ("M_TRIM_THRESHOLD", -1, 4 << 30), ("M_TOP_PAD", -2, 256 << 20))


def user_tunables(environ: dict[str, str] | None = None) -> list[str]:
    """The ``glibc.malloc.*`` settings of ``GLIBC_TUNABLES`` (``name=value`` items joined by ``:``)."""
    env = os.environ if environ is None else environ
    return [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t.strip().startswith("glibc.malloc.")]


def keep_large_blocks(environ: dict[str, str] | None = None) -> bool:
    """Apply `SETTINGS` with glibc's ``mallopt``; True when all were applied."""
    env = os.environ if environ is None else environ
    if not switch(ENV, env):  # raises NumericsError (a ValueError: one line, exit 1) for an unknown word
        return False
    if any(k.startswith("MALLOC_") for k in env) or user_tunables(env):  # the user's own allocator settings win
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt is a no-op  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # the values fit a C int: 4 GiB does not, so the trim threshold is capped at INT_MAX
    return all(mallopt(number, min(value, 2**31 - 1)) == 1 for _, number, value in SETTINGS)
