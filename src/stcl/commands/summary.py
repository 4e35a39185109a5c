"""`stcl summary`: what the chain produced, how long each job took, and how well every model did.

Printed by the Snakefile's `onsuccess` handler at the end of every `snakemake` run (also a no-op one):

* where the submission zip and the tables are (``--submission``, ``--tables``);
* the wall time of each job, from Snakemake's benchmark files (``--benchmarks``: ``**/*.tsv``, column `s`);
* val mIoU / WIoU / VC8 / VC16 of every evaluated model (`stcl evaluate --details` records in
  ``--metrics-dir``), and TC when the run computed it (``tc.raft_weights``), with the chance levels
  beside them (`stcl.metrics.tables.chance_levels`: a constant most-frequent-class prediction and a
  uniform random one), so a run that did not learn is visible at a glance.

Anything not built yet is reported as such; the command never fails on a partial run. No torch import.
"""

from __future__ import annotations

import argparse
import csv
import json
import zipfile
from pathlib import Path
from typing import Any

METRICS = ("mIoU", "WIoU", "VC8", "VC16")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml; only checked)")
    p.add_argument("--submission", type=Path, required=True, help="the submission zip (`stcl submit`)")
    p.add_argument("--tables", type=Path, required=True, help="the tables markdown (`stcl tables`)")
    p.add_argument("--benchmarks", type=Path, required=True, help="folder of Snakemake's benchmark .tsv files")
    p.add_argument("--metrics-dir", type=Path, required=True, help="folder of `stcl evaluate --details` JSONs")


def job_times(bench_dir: Path) -> list[tuple[str, float]]:
    """(job name, wall seconds) of every Snakemake benchmark file under `bench_dir`, in run order."""
    rows = []
    for path in bench_dir.rglob("*.tsv"):
        with path.open(newline="") as fh:
            records = list(csv.DictReader(fh, delimiter="\t"))
        if not records or "s" not in records[-1]:
            continue
        name = str(path.relative_to(bench_dir).with_suffix(""))
        rows.append((path.stat().st_mtime, name, float(records[-1]["s"])))
    return [(name, secs) for _, name, secs in sorted(rows)]


def read_metrics(metrics_dir: Path) -> list[dict[str, Any]]:
    """Metrics JSONs in the order the chain wrote them (oldest first, then by name)."""
    found = {p.stem: p for p in metrics_dir.glob("*.json")} if metrics_dir.is_dir() else {}
    order = sorted(found, key=lambda name: (found[name].stat().st_mtime, name))
    out = []
    for name in order:
        try:
            out.append(json.loads(found[name].read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{found[name]}: unreadable metrics file ({err})") from None
    return out


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    return f"{100 * float(v):6.2f}"


def _metrics_table(metrics: list[dict[str, Any]]) -> list[str]:
    from stcl.metrics.tables import chance_levels

    width = max([len(m.get("model", "?")) for m in metrics] + [24])
    shown = METRICS + (("TC",) if any(m.get("TC") is not None for m in metrics) else ())
    lines = [f"  {'model':<{width}} " + " ".join(f"{k:>6}" for k in shown) + "   (%, val)"]
    for m in metrics:
        lines.append(f"  {m.get('model', '?'):<{width}} " + " ".join(_fmt(m.get(k)) for k in shown))
    for c in chance_levels(metrics):  # no chance level of TC: it compares a model with itself
        label = "chance: " + c["method"].split(":")[0].split(" over ")[0]
        lines.append(f"  {label:<{width}} " + " ".join(_fmt(c["values"].get(k)) for k in shown))
        lines.append(f"  {'':<{width}}   ({c['method']})")
    return lines


def summary_lines(zip_path: Path, tables: Path, benchmarks: Path, metrics_dir: Path) -> list[str]:
    lines = ["", "stcl: results of the chain"]
    if zip_path.is_file():
        with zipfile.ZipFile(zip_path) as zf:
            n = sum(1 for name in zf.namelist() if name.endswith(".png"))
        lines.append(f"  submission: {zip_path} ({n} PNG frames, {zip_path.stat().st_size / 1e6:.1f} MB)")
    else:
        lines.append(f"  submission: {zip_path} (not built)")
    lines.append(f"  tables:     {tables}" + ("" if tables.is_file() else " (not built)"))
    times = job_times(benchmarks)
    if times:
        lines.append(f"Wall time per job (Snakemake benchmarks, {benchmarks}/):")
        width = max(len(name) for name, _ in times)
        lines += [f"  {name:<{width}} {secs:8.1f} s" for name, secs in times]
        lines.append(f"  {'sum over jobs':<{width}} {sum(s for _, s in times):8.1f} s")
    metrics = read_metrics(metrics_dir)
    if metrics:
        first = metrics[0]
        lines.append(
            f"Val metrics ({first.get('videos', '?')} videos, {first.get('frames', '?')} frames; "
            f"chance levels from the GT class frequencies):"
        )
        lines += _metrics_table(metrics)
    else:
        lines.append(f"Val metrics: none yet ({metrics_dir}/*.json)")
    return lines


def run(args: argparse.Namespace) -> int:
    from stcl.params import load_params

    load_params(args.params)
    print("\n".join(summary_lines(args.submission, args.tables, args.benchmarks, args.metrics_dir)))
    return 0
