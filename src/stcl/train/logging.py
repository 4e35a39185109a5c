"""Training logs of rank 0: a tqdm bar, DVC plot files in dvclive's layout, and the final metrics JSON.

Files (the layout dvclive writes, without importing it: dvclive pulls in dvc and probes for a repository,
which costs seconds per launch and needs nothing here):

* ``<out>/dvclive/plots/metrics/train/<name>.tsv``: header ``step\t<name>``, one row per log step
  (step = completed iterations); names: loss, lr and the loss parts (ce, aux, stcl).
* ``<out>/dvclive/metrics.json``: the latest values, ``{"train": {...}, "step": N}``.

No dvc.yaml is written here: the workflow's dvc.yaml declares ``results/models/<stage>/dvclive/plots/metrics``
as plots (x: step), so ``dvc plots show`` draws loss and lr. On resume, rows at or after the resume iteration
(logged after the last checkpoint by a run that was killed) are dropped first, so every step appears once.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

from tqdm import tqdm

from stcl.atomic import write_json, write_text

__all__ = ["TrainLogger", "truncate_dvclive"]


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
        write_text(tsv, buf.getvalue())


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

    def __init__(self, out_dir: Path, *, enabled: bool, total_iters: int, start_iter: int, desc: str) -> None:
        self.enabled = enabled
        self.total_iters = total_iters
        self.start_iter = start_iter
        self._t0 = time.perf_counter()
        self._bar = None
        if not enabled:
            return
        self._live_dir = out_dir / "dvclive"
        if start_iter > 0:
            # Rows up to the checkpoint's iteration describe iterations it holds; later ones are redone.
            truncate_dvclive(self._live_dir, start_iter + 1)
        else:
            for old in (self._live_dir / "plots" / "metrics" / "train").glob("*.tsv"):
                old.unlink()  # a fresh run replaces the curves of an earlier one
        self._summary: dict[str, float] = {}
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
        if not self.enabled:
            return
        folder = self._live_dir / "plots" / "metrics" / "train"
        folder.mkdir(parents=True, exist_ok=True)
        for name, value in metrics.items():
            tsv = folder / f"{name}.tsv"
            new = not tsv.exists()
            with open(tsv, "a", encoding="utf-8") as f:
                if new:
                    f.write(f"step\t{name}\n")
                f.write(f"{iteration}\t{float(value)!r}\n")
            self._summary[name] = float(value)
        write_json(self._live_dir / "metrics.json", {"train": self._summary, "step": iteration}, sort_keys=True)
        if not self._tty:
            elapsed = time.perf_counter() - self._t0
            rate = (iteration - self.start_iter) / max(elapsed, 1e-9)
            eta = (self.total_iters - iteration) / max(rate, 1e-9)
            parts = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(
                f"[{iteration}/{self.total_iters}] {parts} it/s={rate:.2f} eta={eta:.0f}s", file=sys.stderr, flush=True
            )

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
