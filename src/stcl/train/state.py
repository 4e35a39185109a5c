"""Resume checkpoints: full training state, written atomically, loadable with ``weights_only=True``.

Layout: ``<out>/state/iter_<8-digit iteration>.pt`` where the iteration is the number of *completed*
optimiser steps. A file is written under a temporary name in the same folder, flushed to disk and renamed,
so a name matching ``iter_*.pt`` is always a complete checkpoint; a crash (even kill -9) mid-write leaves
at most a ``.tmp`` file that is ignored and cleaned. The newest ``keep`` checkpoints are kept.

A checkpoint damaged after it was written (a full or failing disk, a copy cut short) cannot stop a resume:
:meth:`CheckpointManager.load_newest_readable` sets an unreadable one aside as ``iter_<n>.pt.unreadable``
(kept for inspection, never loaded again), warns naming it and the one it falls back to, and loads the
previous good one.

``<out>/state/delivered.json`` ({"iteration", "fingerprint"}) is written once the run's ``model.pt`` and
``train_metrics.json`` are in place: a final checkpoint without it is a run that finished training but
failed (a full disk, a killed job) before its outputs were written, and the next run writes them from that
checkpoint instead of training again (see `stcl.train.loop`).

State dict (format "stcl-train-state/1"):
    iteration, model, optimizer, scheduler, scaler (None without fp16), rng (one entry per rank, see
    :func:`capture_rng`), data ({"iteration", "cursors"}), fingerprint (hash of the params that shape the
    run), world_size, log (small dict of running statistics).
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stcl.atomic import remove_stale_tmp, write_json, write_stream

__all__ = ["STATE_FORMAT", "CheckpointManager", "capture_rng", "restore_rng"]

STATE_FORMAT = "stcl-train-state/1"
UNREADABLE_SUFFIX = ".unreadable"
DELIVERED_NAME = "delivered.json"
_NAME = re.compile(r"^iter_(\d{8})\.pt$")


def capture_rng() -> dict[str, Any]:
    """This process's RNG states (torch CPU, every CUDA device, numpy global, python) as plain tensors/ints."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class CheckpointManager:
    """Writes, finds and prunes the resume checkpoints of one output folder.

    Args:
        folder: ``<out>/state``.
        keep: how many of the newest checkpoints to keep (>= 1).
    """

    def __init__(self, folder: Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.folder = Path(folder)
        self.keep = keep

    def path_for(self, iteration: int) -> Path:
        return self.folder / f"iter_{iteration:08d}.pt"

    def list(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as (iteration, path), oldest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for p in self.folder.iterdir():
            m = _NAME.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def latest(self) -> Path | None:
        items = self.list()
        return items[-1][1] if items else None

    def load(self, path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Load one checkpoint with ``weights_only=True``; errors name the file."""
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # a truncated/corrupt file: name it
            raise ValueError(f"{path}: cannot read training checkpoint ({type(err).__name__}: {err})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: not a {STATE_FORMAT} checkpoint")
        return state

    def load_newest_readable(
        self, map_location: str | torch.device = "cpu", warn: Callable[[str], None] | None = None
    ) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads, as (path, state); None if there is none.

        Each newer one that does not load is renamed to ``<name>.unreadable`` and reported through ``warn``
        in one line naming it, why, and the checkpoint used instead (or that none is left); default: stderr.
        """
        warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        items = self.list()
        while items:
            _, path = items.pop()
            try:
                return path, self.load(path, map_location)
            except ValueError as err:
                aside = path.with_name(path.name + UNREADABLE_SUFFIX)
                path.replace(aside)
                fallback = f"falling back to {items[-1][1]}" if items else "no earlier checkpoint: starting afresh"
                warn(f"stcl train: warning: {err}; set aside as {aside.name}, {fallback}")
        return None

    def save(self, state: dict[str, Any], iteration: int) -> Path:
        """Atomically write `state` as the checkpoint of `iteration`, then prune old ones and stale temps."""
        path = self.path_for(iteration)
        write_stream(path, lambda f: torch.save({"format": STATE_FORMAT, **state}, f), fsync=True)
        for _, old in self.list()[: -self.keep]:
            old.unlink(missing_ok=True)
        remove_stale_tmp(self.folder)  # this process's own temporary is renamed by now
        (self.folder / DELIVERED_NAME).unlink(missing_ok=True)  # a run in progress has delivered nothing yet
        return path

    def mark_delivered(self, iteration: int, fingerprint: str) -> None:
        """Record that the outputs (model.pt, metrics) of the run ending at `iteration` are written."""
        write_json(self.folder / DELIVERED_NAME, {"iteration": iteration, "fingerprint": fingerprint})

    def delivered(self) -> dict[str, Any] | None:
        """The record of `mark_delivered`, or None (none written, or unreadable: treated as not delivered)."""
        try:
            record = json.loads((self.folder / DELIVERED_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def clear(self) -> None:
        """Remove every checkpoint, the unreadable ones set aside included (params changed, or --restart)."""
        for _, p in self.list():
            p.unlink(missing_ok=True)
        if self.folder.is_dir():
            for p in self.folder.glob(f"iter_*.pt{UNREADABLE_SUFFIX}"):
                p.unlink(missing_ok=True)
        (self.folder / DELIVERED_NAME).unlink(missing_ok=True)
