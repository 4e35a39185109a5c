"""The training loop shared by every stage: accumulation, DDP, AMP, exact resume, preemption, NaN stop.

One *iteration* is one optimiser step over the global batch (``batch_size`` samples): each of the
``world_size`` processes runs ``accum = batch_size / (world_size * batch_per_device)`` micro-batches and
DDP averages the gradients. Which samples an iteration reads is fixed by :class:`stcl.train.mix.MixPlan`,
the learning rate by :class:`stcl.train.optim.WarmupPolySchedule`, so the iteration number plus the model,
optimiser and RNG states is the complete state of a run (see :mod:`stcl.train.state`).

Preemption: SIGTERM or SIGUSR1 (Slurm sends one before killing a job: ``--signal=USR1@120`` or on
preemption) sets a flag; at the end of the current iteration every rank agrees, a checkpoint is written and
:func:`train` returns with ``preempted=True``; ``stcl train`` then exits with
:data:`stcl.exit_codes.EXIT_PREEMPTED` (75, EX_TEMPFAIL in sysexits.h: "temporary failure, retry"). Running
the same command again resumes. Ctrl-C (SIGINT) does the same, with ``stop_signal == SIGINT`` and exit
:data:`stcl.exit_codes.EXIT_INTERRUPTED` (130);
a second Ctrl-C while that checkpoint is being reached stops at once (KeyboardInterrupt, no checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from stcl.atomic import write_json
from stcl.exit_codes import EXIT_INTERRUPTED, EXIT_PREEMPTED
from stcl.hold import hold
from stcl.params import TrainStageParams, grad_accum_steps
from stcl.train.distributed import DistContext, all_gather_objects
from stcl.train.logging import TrainLogger
from stcl.train.mix import MixBatchSampler, MixedDataset, MixPlan
from stcl.train.optim import WarmupPolySchedule, build_optimizer
from stcl.train.state import CheckpointManager, capture_rng, restore_rng

__all__ = [
    "NonFiniteLossError",
    "LossFn",
    "TrainJob",
    "TrainResult",
    "train",
    "seed_everything",
]

# (model output, labels (B,T,H,W) int64, use_stcl) -> (scalar loss, {part name: float})
LossFn = Callable[[Any, torch.Tensor, bool], tuple[torch.Tensor, dict[str, float]]]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the message names the iteration and the last good checkpoint."""


@dataclass
class TrainJob:
    """Everything :func:`train` needs, already built (the model on CPU, datasets constructed).

    Attributes:
        name: stage name (bar label, metrics).
        stage: the stage's params (iters, batch sizes, optimiser, amp, seed, workers, checkpoint_every, ...).
        model: the segmentor; ``model(images (B,T,3,H,W))`` returns what `loss_fn` takes.
        datasets: one dataset per entry of ``stage.datasets`` (same order), items {"img", "label", ...}, each
            with ``frames_per_item`` (T of its items: datasets of one T share batches, `stcl.train.mix`).
        loss_fn: see :data:`LossFn`; `use_stcl` is True for clip batches (T > 1) when STCL is enabled.
        out_dir: the stage's output folder (model.pt, train_metrics.json, dvclive/, state/).
        fingerprint: hash of the params that shape the run; checkpoints with another one are discarded.
        seed: the run's seed (`stcl.train.seeds.stage_seed`): sample order, per-rank RNGs, loader generator.
        save_model: writes the final weights file (rank 0): ``save_model(path, model)``; ``iterations=0`` records
            an untrained model (`stcl train --untrained`).
        sync_bn: convert BatchNorm to SyncBatchNorm (CUDA + several processes only).
        summary: extra entries for train_metrics.json (e.g. the init-weights report).
    """

    name: str
    stage: TrainStageParams
    model: nn.Module
    datasets: Sequence[Dataset]
    loss_fn: LossFn
    out_dir: Path
    fingerprint: str
    save_model: Callable[..., None]
    seed: int
    sync_bn: bool = False
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    iteration: int  # completed iterations
    preempted: bool  # stopped early by a signal, after writing a checkpoint
    metrics: dict[str, Any]
    stop_signal: int | None = None  # the signal that stopped it (SIGTERM, SIGUSR1 or SIGINT)

    @property
    def exit_code(self) -> int:
        """0 done; 130 stopped by Ctrl-C; 75 stopped by SIGTERM/SIGUSR1 (both resumable)."""
        if not self.preempted:
            return 0
        return EXIT_INTERRUPTED if self.stop_signal == signal.SIGINT else EXIT_PREEMPTED


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global RNG and python's `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class _PreemptFlag:
    """Context manager: SIGTERM/SIGUSR1/SIGINT set ``.raised`` instead of killing the process.

    A second SIGINT raises KeyboardInterrupt (the user insists: stop now, without a checkpoint).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

    def __init__(self) -> None:
        self.raised: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.raised == signal.SIGINT:
            raise KeyboardInterrupt
        if signum == signal.SIGINT:
            # os.write, not print: a handler may run inside another write to stderr (tqdm), print would fail
            os.write(2, b"stcl train: Ctrl-C: writing a checkpoint at the end of this iteration (again: stop now)\n")
        self.raised = signum

    def __enter__(self) -> "_PreemptFlag":
        with contextlib.suppress(ValueError):  # not the main thread: signals stay default
            for s in self.SIGNALS:
                if s == signal.SIGINT and signal.getsignal(s) is signal.SIG_IGN:
                    continue  # started with Ctrl-C ignored (nohup, a background job): keep it so
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


class _Run:
    """The mutable pieces of one run (kept together so helpers stay small)."""

    def __init__(self, job: TrainJob, ctx: DistContext) -> None:
        sp = job.stage
        self.job, self.ctx, self.sp = job, ctx, sp
        self.accum = grad_accum_steps(sp.batch_size, ctx.world_size, sp.batch_per_device)
        self.plan = MixPlan(
            [len(d) for d in job.datasets], [d.weight for d in sp.datasets], sp.iters, sp.batch_size, job.seed,
            item_frames=[d.frames_per_item for d in job.datasets],
        )
        model = job.model.to(ctx.device)
        if job.sync_bn and ctx.distributed and ctx.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif job.sync_bn and ctx.is_main:
            print("stcl train: model.sync_bn applies to multi-GPU runs only; plain BatchNorm here", flush=True)
        self.model = model
        self.optimizer = build_optimizer(model, sp.optimizer)
        self.schedule = WarmupPolySchedule(self.optimizer, sp.optimizer, sp.iters)
        self.scaler = torch.amp.GradScaler("cuda", enabled=sp.amp == "fp16" and ctx.device.type == "cuda")
        self.ckpts = CheckpointManager(job.out_dir / "state")
        self.iteration = 0
        self.log: dict[str, Any] = {"first_loss": None, "seconds": 0.0}

    # -- state -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        rngs = all_gather_objects(capture_rng(), self.ctx)  # collective: every rank calls it
        return {
            "iteration": self.iteration,
            "model": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rngs,
            "data": {"iteration": self.iteration, "cursors": self.plan.cursors(self.iteration)},
            "fingerprint": self.job.fingerprint,
            "world_size": self.ctx.world_size,
            "log": dict(self.log),
        }

    def save(self) -> Path | None:
        state = self.state_dict()
        if not self.ctx.is_main:
            return None
        return self.ckpts.save(state, self.iteration)

    def try_resume(self) -> Path | None:
        """Load the newest readable checkpoint of this run (same fingerprint) that still has work to do.

        Returns its path, or None (fresh start). An unreadable newer checkpoint is set aside with a warning
        (see `CheckpointManager.load_newest_readable`). Checkpoints of other params are deleted (rank 0).
        The final checkpoint of a run whose outputs were never written (no ``delivered.json``: the process
        died or failed between that checkpoint and model.pt) is loaded too: `train` then only writes the
        outputs. Checkpoints of a run whose outputs were written are deleted and the stage is trained again:
        Snakemake/DVC rerun a finished stage only when something it depends on changed (code, data, init
        weights), and they remove model.pt first.
        """
        found = self.ckpts.load_newest_readable() if self.ctx.is_main else None  # rank 0's view decides
        view = (found[0], self.ckpts.delivered()) if found else None
        latest, delivered = all_gather_objects(view, self.ctx)[0] or (None, None)
        if latest is None:
            return None
        state = found[1] if found else self.ckpts.load(latest)
        reason = None
        done = {"iteration": int(state["iteration"]), "fingerprint": state.get("fingerprint")}
        if state.get("fingerprint") != self.job.fingerprint:
            reason = "holds checkpoints of other params"
        elif int(state["iteration"]) >= self.sp.iters and delivered == done:
            reason = "holds a finished run whose model.pt was written (a rerun retrains)"
        if reason is not None:
            if self.ctx.is_main:
                print(f"stcl train: {latest.parent} {reason}; starting afresh", flush=True)
                self.ckpts.clear()
            return None
        _unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if state["scaler"] is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        if self.ctx.rank < len(rngs):
            restore_rng(rngs[self.ctx.rank])
        else:
            seed_everything(self.job.seed + self.ctx.rank)
        self.iteration = int(state["iteration"])
        self.log.update(state["log"])
        return latest


def _ignore_preempt_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGUSR1/SIGINT: Slurm signals every process of the job, Ctrl-C the
    whole process group, and the main process, not the workers, decides when to stop (it shuts them down)."""
    for s in _PreemptFlag.SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def _loader(run: _Run) -> Iterator[dict]:
    sampler = MixBatchSampler(run.plan, run.iteration, run.ctx.rank, run.ctx.world_size, run.sp.batch_per_device)
    loader = DataLoader(
        MixedDataset(run.job.datasets),
        batch_sampler=sampler,
        num_workers=run.sp.workers,
        pin_memory=run.ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(run.job.seed + run.ctx.rank),  # keeps the global RNG untouched
        worker_init_fn=_ignore_preempt_signals,
    )
    return iter(loader)


def _step(run: _Run, batches: Iterator[dict], use_stcl_cfg: bool) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimiser step; returns (the summed micro-batch losses / accum, as a 1-element tensor, parts)."""
    model, ctx = run.model, run.ctx
    run.schedule.set_iter(run.iteration)
    run.optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=ctx.device)
    parts: dict[str, float] = {}
    for m in range(run.accum):
        batch = next(batches)
        # uint8 from the workers (stcl.data.clips); converted here, on the device (the model normalises)
        images = batch["img"].to(ctx.device, non_blocking=True).float()
        labels = batch["label"].to(ctx.device, non_blocking=True).long()
        use_stcl = use_stcl_cfg and images.shape[1] > 1
        sync = contextlib.nullcontext() if m == run.accum - 1 or not ctx.distributed else model.no_sync()
        with sync:
            with _autocast(run.sp.amp, ctx.device):
                out = model(images)
                loss, p = run.job.loss_fn(out, labels, use_stcl)
            run.scaler.scale(loss / run.accum).backward()
        total += loss.detach().float() / run.accum
        for k, v in p.items():
            parts[k] = parts.get(k, 0.0) + float(v) / run.accum
    return total, parts


def _agree(run: _Run, loss: torch.Tensor, stop_requested: bool) -> tuple[float, bool]:
    """One collective per iteration: the mean loss over ranks and whether any rank was asked to stop.

    Raises:
        NonFiniteLossError: the loss is NaN/inf on any rank (every rank raises; no optimiser step).
    """
    finite = bool(torch.isfinite(loss))
    stats = torch.stack(
        [
            loss if finite else torch.zeros_like(loss),
            torch.tensor(0.0 if finite else 1.0, device=loss.device),
            torch.tensor(1.0 if stop_requested else 0.0, device=loss.device),
        ]
    )
    if run.ctx.distributed:
        torch.distributed.all_reduce(stats)
    loss_sum, n_bad, n_stop = stats.tolist()
    if n_bad > 0:
        last = run.ckpts.latest()
        value = float(loss) if not finite else "non-finite on another rank"
        raise NonFiniteLossError(
            f"{run.job.name}: loss is {value} at iteration {run.iteration + 1} (of {run.sp.iters}); training "
            f"stopped before the optimiser step. Last good checkpoint: "
            f"{last if last is not None else 'none (no checkpoint written yet)'}"
        )
    return loss_sum / run.ctx.world_size, n_stop > 0


def _apply_step(run: _Run) -> None:
    clip = run.sp.optimizer.clip_grad_norm
    if clip is not None:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()


def train(job: TrainJob, ctx: DistContext, callbacks: Sequence[Callable[[int], None]] = ()) -> TrainResult:
    """Train `job` to ``job.stage.iters`` iterations, resuming from ``<out>/state`` when possible.

    Args:
        job: the built stage.
        ctx: this process's place in the job (see :func:`stcl.train.distributed.init_distributed`).
        callbacks: called as ``cb(completed_iterations)`` after each iteration (after any checkpoint).

    Returns:
        The completed iteration count, whether the run stopped for preemption, and the final metrics
        (also written to ``<out>/train_metrics.json`` by rank 0).

    Raises:
        NonFiniteLossError: the loss of an iteration was NaN/inf (the optimiser step is not taken).
    """
    sp = job.stage
    seed_everything(job.seed + ctx.rank)  # per-rank seeds (dropout, drop path); replaced by a resume
    run = _Run(job, ctx)
    resumed_from = run.try_resume()
    finished = resumed_from is not None and run.iteration >= sp.iters
    if ctx.is_main and finished:
        print(
            f"stcl train: {resumed_from} is the final checkpoint of this run ({run.iteration}/{sp.iters} "
            f"iterations) and its outputs were never written; writing {job.out_dir / 'model.pt'} from it "
            "(no training)",
            flush=True,
        )
    elif ctx.is_main and resumed_from is not None:
        print(f"stcl train: resuming {job.name} from {resumed_from} (iteration {run.iteration}/{sp.iters})", flush=True)
    model = run.model
    if ctx.distributed:
        model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        run.model = model
    model.train()
    if sp.amp != "off" and ctx.device.type != "cuda" and ctx.is_main:
        print(f"stcl train: amp={sp.amp} applies to CUDA only; training in float32 on {ctx.device}", flush=True)

    logger = TrainLogger(
        job.out_dir, enabled=ctx.is_main, total_iters=sp.iters, start_iter=run.iteration, desc=job.name
    )
    use_stcl = sp.stcl.enabled
    window: dict[str, list[float]] = {}  # name -> [sum, count] since the last log line
    t_start = time.perf_counter()
    preempted = False
    stop_signal: int | None = None
    try:
        with _PreemptFlag() as flag:
            batches = _loader(run) if not finished else iter(())
            while run.iteration < sp.iters:
                loss, parts = _step(run, batches, use_stcl)
                loss_value, stop = _agree(run, loss, flag.raised is not None)
                _apply_step(run)
                lr = run.schedule.get_last_lr()
                run.iteration += 1
                if run.log["first_loss"] is None:
                    run.log["first_loss"] = loss_value
                run.log["last_loss"] = loss_value
                for k, v in {"loss": loss_value, **parts}.items():
                    acc = window.setdefault(k, [0.0, 0])
                    acc[0] += v
                    acc[1] += 1
                logger.update(run.iteration, loss_value, lr)
                if run.iteration % sp.log_every == 0 or run.iteration == sp.iters:
                    means = {k: total / count for k, (total, count) in window.items()}
                    logger.log(run.iteration, {**means, "lr": lr})
                    run.log["window_loss"] = means["loss"]
                    window = {}
                if run.iteration % sp.checkpoint_every == 0 or run.iteration == sp.iters or stop:
                    run.log["seconds"] = float(run.log["seconds"]) + time.perf_counter() - t_start
                    t_start = time.perf_counter()
                    run.save()
                    # tests: stop here on request (stcl.hold); a signal ends the wait, the next iteration then stops
                    hold(f"train.checkpoint.{run.iteration}", stop=lambda: flag.raised is not None)
                for cb in callbacks:
                    cb(run.iteration)
                if stop:
                    preempted, stop_signal = True, flag.raised or signal.SIGTERM  # another rank's
                    break
    finally:
        logger.close()

    run.log["seconds"] = float(run.log["seconds"]) + time.perf_counter() - t_start
    result = TrainResult(run.iteration, preempted, _final_metrics(run), stop_signal)
    if ctx.is_main:
        if preempted:
            how = "interrupted" if stop_signal == signal.SIGINT else "preempted"
            print(
                f"stcl train: {how}; checkpoint at iteration {run.iteration} written, exit {result.exit_code} "
                "(run the same command again to resume)",
                flush=True,
            )
        else:
            job.save_model(job.out_dir / "model.pt", _unwrap(run.model))
            write_json(job.out_dir / "train_metrics.json", result.metrics, sort_keys=True)
            run.ckpts.mark_delivered(run.iteration, job.fingerprint)  # last: a failure above leaves it unmarked
    return result


def _final_metrics(run: _Run) -> dict[str, Any]:
    sp, seconds = run.sp, float(run.log["seconds"])
    return {
        "stage": run.job.name,
        "iterations": run.iteration,
        "global_batch": sp.batch_size,
        "world_size": run.ctx.world_size,
        "cpu_threads": torch.get_num_threads(),  # CPU float32 sums depend on it (docs/numerics.md)
        "grad_accum": run.accum,
        "first_loss": run.log["first_loss"],
        "last_loss": run.log.get("last_loss"),
        "final_window_loss": run.log.get("window_loss"),
        "final_lr": run.schedule.get_last_lr(),
        "train_seconds": seconds,
        "it_per_s": run.iteration / seconds if seconds > 0 else None,
        **run.job.summary,
    }
