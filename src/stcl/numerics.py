"""Portable float32 CPU numerics: the same arithmetic on every x86-64 machine with AVX2.

oneDNN (convolutions), MKL (matrix products) and ATen (its own vectorised kernels) choose their kernels at
run time by the CPU's vector ISA; kernels of different widths sum in different orders, so float32 results
differ in the last bits between, e.g., an AVX-512/AMX machine and an AVX2 one, and over 200 training
iterations those bits grow into different metrics (`benchmarks/numerics_settings.py` measures each
setting on one machine by capping the ISA). Capping all three at AVX2 — every x86-64 CPU since 2013 has
it — is meant to make every machine run the same kernels; `stcl.numerics_digests` fingerprints those
kernels, and ``tests/test_numerics_digests.py`` compares them with the machines measured.

`apply` puts these variables into the environment unless the user set them (or set
``STCL_PORTABLE_NUMERICS=0`` to keep each machine's fastest kernels). `stcl.cli.main` calls it first, before
torch runs anything: the libraries read the variables when they first dispatch. The thread count matters
too (a reduction split over another number of threads sums in another order); it is not pinned here.

A value the libraries would not understand is refused (`NumericsError`, one line naming the variable and
the accepted values) instead of silently unpinning: the libraries ignore what they cannot parse, or (MKL)
read it as its automatic choice, and run the machine's own kernels. `switch` reads the on/off variables of stcl (this one and
``STCL_MALLOC_TUNING``) and refuses words it does not know.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

__all__ = ["ACCEPTED", "ENV", "NumericsError", "OFF_WORDS", "ON_WORDS", "PORTABLE", "apply", "switch"]

ENV = "STCL_PORTABLE_NUMERICS"
PORTABLE: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: no AVX-512 / AMX kernels
    "MKL_CBWR": "AVX2",  # MKL conditional numerical reproducibility: the AVX2 code path on every CPU
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen: the AVX2 build of its vectorised kernels
}
ON_WORDS = ("1", "true", "yes", "on")
OFF_WORDS = ("0", "false", "no", "off")

_ONEDNN_ISAS = (
    "DEFAULT SSE41 AVX AVX2 AVX2_VNNI AVX2_VNNI_2 AVX512_CORE AVX512_CORE_VNNI AVX512_CORE_BF16 AVX512_CORE_FP16 "
    "AVX10_1_512 AVX512_CORE_AMX AVX10_1_512_AMX AVX512_CORE_AMX_FP16 AVX10_1_512_AMX_FP16"
).split()
_MKL_BRANCH = r"(?:AUTO|COMPATIBLE|SSE2|SSE3|SSSE3|SSE4_1|SSE4_2|AVX|AVX2(?:_E[1-9])?|AVX512(?:_E[1-9])?|AVX512_MIC(?:_E1)?)"
_ATEN_CAPABILITIES = ("default", "avx2", "avx512")
# What each library accepts, checked the way the library reads it (measured with torch 2.14.1: oneDNN takes
# any case; MKL only upper case, it reads `MKL_CBWR=compatible` or `=foo` as AUTO, the machine's own
# branch; ATen only lower case, it ignores `AVX2`): (test, accepted).
# DNNL_MAX_CPU_ISA is oneDNN's older name of ONEDNN_MAX_CPU_ISA (read when the new one is unset).
ACCEPTED: dict[str, tuple[Callable[[str], bool], str]] = {
    "ONEDNN_MAX_CPU_ISA": (lambda v: v.upper() in _ONEDNN_ISAS, f"{', '.join(_ONEDNN_ISAS)} (any case)"),
    "DNNL_MAX_CPU_ISA": (lambda v: v.upper() in _ONEDNN_ISAS, f"{', '.join(_ONEDNN_ISAS)} (any case)"),
    "MKL_CBWR": (
        lambda v: re.fullmatch(rf"(?:BRANCH=)?{_MKL_BRANCH}(?:,STRICT)?", v) is not None,
        "[BRANCH=]<branch>[,STRICT] in upper case, <branch> one of AUTO, COMPATIBLE, SSE2, SSE4_2, AVX, AVX2, "
        "AVX512, AVX512_E1..",
    ),
    "ATEN_CPU_CAPABILITY": (lambda v: v in _ATEN_CAPABILITIES, f"{', '.join(_ATEN_CAPABILITIES)} (lower case)"),
}


class NumericsError(ValueError):
    """An environment variable of the numerics or allocator settings holds a value that would be ignored."""


def switch(name: str, environ: Mapping[str, str] | None = None, default: bool = True) -> bool:
    """The on/off variable ``name``: `ON_WORDS` or `OFF_WORDS` (any case), unset or empty for ``default``.

    Raises `NumericsError` (one line naming the variable and the accepted words) for anything else: a word
    such as ``disable`` must not leave a setting on unnoticed.
    """
    env = os.environ if environ is None else environ
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in ON_WORDS or value in OFF_WORDS:
        return value in ON_WORDS
    raise NumericsError(
        f"{name}={env[name]!r} is not an on/off word: use one of {', '.join(OFF_WORDS)} (off) or "
        f"{', '.join(ON_WORDS)} (on), any case, or leave it unset (on)"
    )


def apply(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the `PORTABLE` variables the user did not set (nothing when ``STCL_PORTABLE_NUMERICS`` is off).

    Returns the variables it set. Raises `NumericsError` when ``STCL_PORTABLE_NUMERICS`` is not an on/off word
    or, with the pin on, a variable of `ACCEPTED` holds a value its library would ignore.
    """
    env = os.environ if environ is None else environ
    if not switch(ENV, env):
        return {}
    for name, (accepts, accepted) in ACCEPTED.items():
        if name in env and not accepts(env[name]):  # as the library reads it: no spaces trimmed
            raise NumericsError(
                f"{name}={env[name]!r} is not a value its library understands (it would run the machine's own "
                f"kernels, unpinned): accepted {accepted}; unset it for the pinned "
                f"{PORTABLE.get(name, PORTABLE['ONEDNN_MAX_CPU_ISA'])}, or set {ENV}=0"
            )
    added = {k: v for k, v in PORTABLE.items() if k not in env}
    if "DNNL_MAX_CPU_ISA" in env:  # the user's choice under oneDNN's older name wins too
        added.pop("ONEDNN_MAX_CPU_ISA", None)
    env.update(added)
    return added
