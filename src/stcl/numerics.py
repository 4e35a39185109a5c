"""Portable float32 CPU numerics: the same trained weights on any x86-64 machine with AVX2.

oneDNN (convolutions), MKL (matrix products) and ATen (its own vectorised kernels) choose their kernels at
run time by the CPU's vector ISA; kernels of different widths sum in different orders, so float32 results
differ in the last bits between, e.g., an AVX-512/AMX machine and an AVX2 one, and over 200 training
iterations those bits grow into different metrics (`benchmarks/numerics_settings.py` measures each
setting on one machine by capping the ISA). Capping all three at AVX2 — every x86-64 CPU since 2013 has
it — makes every machine run the same kernels.

`apply` puts these variables into the environment unless the user set them (or set
``STCL_PORTABLE_NUMERICS=0`` to keep each machine's fastest kernels). `stcl.cli.main` calls it first, before
torch runs anything: the libraries read the variables when they first dispatch. The thread count matters
too (a reduction split over another number of threads sums in another order); it is not pinned here.
"""

from __future__ import annotations

import os

__all__ = ["ENV", "PORTABLE", "apply"]

ENV = "STCL_PORTABLE_NUMERICS"
PORTABLE: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: no AVX-512 / AMX kernels
    "MKL_CBWR": "AVX2",  # MKL conditional numerical reproducibility: the AVX2 code path on every CPU
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen: the AVX2 build of its vectorised kernels
}


def apply(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the `PORTABLE` variables the user did not set (nothing when ``STCL_PORTABLE_NUMERICS=0``).

    Returns the variables it set.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return {}
    added = {k: v for k, v in PORTABLE.items() if k not in env}
    env.update(added)
    return added
