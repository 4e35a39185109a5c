"""What makes float32 CPU training differ between x86-64 machines: each setting forced, weights compared.

Trains ``--iters`` iterations of the default ``pretrain_coco`` stage (the repository's params.yaml, embedded
data) with the real ``stcl train`` command once per setting, each in a fresh process with the setting in its
environment, and prints per setting the max |Δw| of the final weights against the reference run (no setting)
and against the pinned run, the training wall time (``train_seconds`` of train_metrics.json) and the CPU
seconds of the whole process (start-up included; on a shared machine the steadier of the two).

A machine with another vector ISA is simulated by capping the ISA each library dispatches on:
``ONEDNN_MAX_CPU_ISA`` (oneDNN: convolutions), ``ATEN_CPU_CAPABILITY`` (ATen's own vectorised kernels),
``MKL_ENABLE_INSTRUCTIONS`` (MKL: matrix products); ``MKL_CBWR`` pins MKL's code path ("conditional numerical
reproducibility"); ``OMP_NUM_THREADS`` is the thread count. "pinned" is ``stcl.numerics.PORTABLE`` (what
every ``stcl`` command applies unless ``STCL_PORTABLE_NUMERICS=0``); the ``pinned+...`` rows are the pinned
run on simulated other machines: 0 there means the pinned setting gives the same weights on them.

    nice -n 15 .venv/bin/python benchmarks/numerics_settings.py --iters 12 --workdir /tmp/numerics
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from stcl.numerics import ENV as PORTABLE_ENV, PORTABLE  # noqa: E402

OFF = {PORTABLE_ENV: "0"}  # the unpinned runs: stcl must not apply its pinned setting there
SETTINGS: list[tuple[str, dict[str, str]]] = [
    ("reference (this machine's defaults)", OFF),
    ("reference again", OFF),
    ("ATEN_CPU_CAPABILITY=avx2", {**OFF, "ATEN_CPU_CAPABILITY": "avx2"}),
    ("ATEN_CPU_CAPABILITY=default", {**OFF, "ATEN_CPU_CAPABILITY": "default"}),
    ("ONEDNN_MAX_CPU_ISA=AVX512_CORE", {**OFF, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}),
    ("ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16", {**OFF, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}),
    ("ONEDNN_MAX_CPU_ISA=AVX2", {**OFF, "ONEDNN_MAX_CPU_ISA": "AVX2"}),
    ("ONEDNN_MAX_CPU_ISA=SSE41", {**OFF, "ONEDNN_MAX_CPU_ISA": "SSE41"}),
    ("MKL_ENABLE_INSTRUCTIONS=AVX2", {**OFF, "MKL_ENABLE_INSTRUCTIONS": "AVX2"}),
    ("MKL_CBWR=COMPATIBLE", {**OFF, "MKL_CBWR": "COMPATIBLE"}),
    ("MKL_CBWR=AVX2", {**OFF, "MKL_CBWR": "AVX2"}),
    ("ONEDNN_MAX_CPU_ISA=AVX2 + MKL_CBWR=AVX2", {**OFF, "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}),
    ("the pinned variables set at start (not by stcl)", {**OFF, **PORTABLE}),
    ("OMP_NUM_THREADS=1", {**OFF, "OMP_NUM_THREADS": "1"}),
    ("pinned (stcl default)", {}),
    ("pinned, again", {}),
    ("pinned + ATEN avx2 + MKL AVX2 (an AVX2 machine)",
     {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}),
    ("pinned but ATEN_CPU_CAPABILITY=avx512", {"ATEN_CPU_CAPABILITY": "avx512"}),
    ("pinned + OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}),
]


def prepare(workdir: Path, iters: int) -> Path:
    """params.yaml (pretrain_coco for ``iters`` iterations) and its data under ``workdir``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pretrain_coco"].update(iters=iters, checkpoint_every=iters, log_every=1)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if not (workdir / "results" / "prepare" / "report.json").exists():
        for cmd in (["synth", "--out", "data"], ["prepare", "--out", "results/prepare"]):
            subprocess.run([sys.executable, "-m", "stcl", *cmd, "--params", "params.yaml"], cwd=workdir, check=True,
                           capture_output=True)
    return workdir / "params.yaml"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(workdir: Path, name: str, env: dict[str, str]) -> tuple[dict[str, torch.Tensor], float, float]:
    """Final weights, training wall seconds, CPU seconds of the whole process (start-up included)."""
    out = workdir / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    base = {k: v for k, v in os.environ.items() if k not in {"OMP_NUM_THREADS", *PORTABLE, PORTABLE_ENV}}
    cmd = [sys.executable, "-m", "stcl", "train", "--stage", "pretrain_coco", "--params", "params.yaml",
           "--coco-semantic", "results/prepare/coco_semantic", "--device", "cpu", "--out", str(out)]
    cpu = _children_cpu()
    done = subprocess.run(cmd, cwd=workdir, env={**base, "OMP_NUM_THREADS": "2", **env}, capture_output=True, text=True)
    cpu = _children_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    weights = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    seconds = json.loads((out / "train_metrics.json").read_text())["train_seconds"]
    return weights, seconds, cpu


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--only", nargs="+", default=None, metavar="TEXT",
                    help="run only the settings whose name contains one of these (and the reference)")
    args = ap.parse_args()
    prepare(args.workdir, args.iters)
    print(f"pretrain_coco, {args.iters} iterations, OMP_NUM_THREADS=2 unless stated; torch {torch.__version__}; "
          f"pinned = {PORTABLE}")
    print("| setting | max abs dw vs reference | max abs dw vs pinned | train wall s | process CPU s |\n"
          "|---|---|---|---|---|", flush=True)
    results = {}
    for name, env in SETTINGS:
        if args.only and name != SETTINGS[0][0] and not any(t in name for t in args.only):
            continue
        start = time.monotonic()
        results[name] = train(args.workdir, f"run{len(results)}", env)
        ref = results[SETTINGS[0][0]][0]
        pinned = results.get("pinned (stcl default)")
        vs_pinned = f"{max_diff(pinned[0], results[name][0]):.3g}" if pinned else "-"
        _, wall, cpu = results[name]
        print(f"| {name} | {max_diff(ref, results[name][0]):.3g} | {vs_pinned} | {wall:.1f} | {cpu:.1f} |"
              f"  ({time.monotonic() - start:.0f} s wall)", flush=True)


if __name__ == "__main__":
    main()
