"""Training logs of rank 0: a tqdm bar, dvclive curves for ``dvc plots``, and the final metrics JSON.

dvclive writes ``<out>/dvclive/plots/metrics/train/{loss,lr,...}.tsv`` (step = completed iterations) and
``<out>/dvclive/metrics.json``. It does not write a dvc.yaml (``dvcyaml=False``): the workflow's dvc.yaml
declares ``results/models/<stage>/dvclive/plots/metrics`` as plots (x: step), so ``dvc plots show`` draws
loss and lr. On resume, rows at or after the resume iteration (logged after the last checkpoint by a run
that was killed) are dropped first, so every step appears once.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

__all__ = ["TrainLogger", "write_json_atomic", "truncate_dvclive"]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary name beside `path`, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def truncate_dvclive(folder: Path, start_step: int) -> None:
    """Drop rows with ``step >= start_step`` from every dvclive metrics TSV under `folder`."""
    for tsv in (folder / "plots" / "metrics").rglob("*.tsv") if folder.is_dir() else []:
        rows = list(csv.DictReader(io.StringIO(tsv.read_text()), delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        kept = [r for r in rows if int(r["step"]) < start_step]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        tmp = tsv.with_name(f".{tsv.name}.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, tsv)


class TrainLogger:
    """Progress bar + dvclive for rank 0; every method is a no-op on other ranks.

    When stderr is not a terminal (Slurm logs) the bar is off and each :meth:`log` prints one line instead.

    Args:
        out_dir: the stage's output folder (dvclive goes to ``out_dir/dvclive``).
        enabled: True on rank 0 only.
        total_iters: iterations of the run.
        start_iter: first iteration of this process (> 0 when resuming).
        desc: bar label (the stage name).
    """

    def __init__(
        self, out_dir: Path, *, enabled: bool, total_iters: int, start_iter: int, desc: str
    ) -> None:
        self.enabled = enabled
        self.total_iters = total_iters
        self.start_iter = start_iter
        self._t0 = time.perf_counter()
        self._live = None
        self._bar = None
        if not enabled:
            return
        from dvclive import Live

        live_dir = out_dir / "dvclive"
        if start_iter > 0:
            truncate_dvclive(live_dir, start_iter)
        self._live = Live(
            dir=str(live_dir), resume=start_iter > 0, save_dvc_exp=False, dvcyaml=False, report=None
        )
        self._tty = sys.stderr.isatty()
        self._bar = tqdm(
            total=total_iters, initial=start_iter, desc=desc, unit="it", dynamic_ncols=True, disable=not self._tty
        )

    def update(self, iteration: int, loss: float, lr: float) -> None:
        """Advance the bar to completed iteration count `iteration` (every iteration; cheap)."""
        if not self.enabled or self._bar is None:
            return
        self._bar.update(iteration - self._bar.n)
        self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def log(self, iteration: int, metrics: dict[str, float]) -> None:
        """Record window-averaged metrics at completed iteration count `iteration` (dvclive step)."""
        if not self.enabled or self._live is None:
            return
        self._live.step = iteration
        for name, value in metrics.items():
            self._live.log_metric(f"train/{name}", float(value))
        self._live.make_summary()
        if not self._tty:
            elapsed = time.perf_counter() - self._t0
            rate = (iteration - self.start_iter) / max(elapsed, 1e-9)
            eta = (self.total_iters - iteration) / max(rate, 1e-9)
            parts = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"[{iteration}/{self.total_iters}] {parts} it/s={rate:.2f} eta={eta:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        if self._live is not None:
            self._live.end()
