"""Toy model, dataset and job for the training-engine tests (fast, deterministic, importable by subprocesses)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from stcl.params import DatasetMix, OptimizerParams, StclParams, TrainStageParams
from stcl.train.loop import TrainJob

NUM_CLASSES = 3


@dataclass
class ToyOutput:
    logits: torch.Tensor  # (B,C,H,W)
    proj: torch.Tensor | None = None


class ToyModel(nn.Module):
    """Two convs with dropout (exercises the RNG) and optional BatchNorm; input (B,T,3,H,W) 0..255."""

    def __init__(self, norm: bool = False, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8) if norm else nn.Identity()
        self.drop = nn.Dropout2d(dropout)
        self.conv2 = nn.Conv2d(8, NUM_CLASSES, 1)

    def forward(self, images: torch.Tensor) -> ToyOutput:
        x = images[:, 0] / 255.0
        return ToyOutput(self.conv2(self.drop(F.relu(self.norm(self.conv1(x))))))


class ToyDataset(Dataset):
    """`size` images whose label is the brightest colour channel per pixel (learnable by a 1×1 conv).

    Items: {"img": (T,3,H,W) float 0..255, "label": (T,H,W) int64}. The augmentation (a random offset) is
    drawn from (seed, epoch, index) like the real datasets.
    """

    def __init__(self, size: int = 16, frames: int = 1, hw: int = 8, seed: int = 0) -> None:
        self.size, self.frames, self.hw, self.seed, self.epoch = size, frames, hw, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def frames_per_item(self) -> int:
        return self.frames

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        img = torch.rand(self.frames, 3, self.hw, self.hw, generator=g) * 255
        jitter = torch.Generator().manual_seed(self.epoch * 7919 + index)
        img = (img + torch.rand(1, generator=jitter) * 10).clamp(0, 255)
        return {"img": img, "label": img.argmax(1)}


def toy_loss(out: ToyOutput, labels: torch.Tensor, use_stcl: bool) -> tuple[torch.Tensor, dict[str, float]]:
    ce = F.cross_entropy(out.logits, labels[:, 0])
    return ce, {"ce": float(ce.detach())}


def toy_stage(**kw) -> TrainStageParams:
    base = dict(
        datasets=(DatasetMix(name="vspw"),),
        iters=12,
        batch_size=4,
        batch_per_device=4,
        stcl=StclParams(enabled=False),
        optimizer=OptimizerParams(name="adamw", lr=0.05, warmup_iters=2),
        checkpoint_every=5,
        log_every=4,
    )
    base.update(kw)
    return TrainStageParams(**base)


def save_state_dict(path: Path, model: nn.Module) -> None:
    torch.save(model.state_dict(), path)


def toy_job(
    out_dir: Path,
    stage: TrainStageParams | None = None,
    *,
    norm: bool = False,
    dropout: float = 0.1,
    loss_fn=toy_loss,
    datasets=None,
) -> TrainJob:
    torch.manual_seed(123)  # identical initial weights in every run and rank
    stage = stage or toy_stage()
    return TrainJob(
        name="toy",
        stage=stage,
        model=ToyModel(norm=norm, dropout=dropout),
        datasets=datasets if datasets is not None else [ToyDataset()],
        loss_fn=loss_fn,
        out_dir=Path(out_dir),
        fingerprint="toy",
        save_model=save_state_dict,
        seed=stage.seed,
    )


def main(out_dir: str, kill_at: int, signal_name: str) -> None:
    """Subprocess entry: train the toy job; send `signal_name` to itself after iteration `kill_at` (0: never)."""
    import os
    import signal

    from stcl.train.distributed import DistContext
    from stcl.train.loop import train

    torch.set_num_threads(1)

    def killer(it: int) -> None:
        if it == kill_at:
            os.kill(os.getpid(), getattr(signal, signal_name))

    result = train(toy_job(Path(out_dir)), DistContext(), callbacks=[killer] if kill_at else [])
    sys.exit(result.exit_code)  # 75 after SIGTERM/SIGUSR1, 130 after SIGINT


def ddp_worker(rank: int, world_size: int, port: int, out_dir: str, stage_kwargs: dict, dropout: float) -> None:
    """torch.multiprocessing.spawn target: one rank of a gloo job; saves its final weights to rank<r>.pt."""
    import os

    from stcl.train.distributed import init_distributed, shutdown_distributed
    from stcl.train.loop import train

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        job = toy_job(Path(out_dir), toy_stage(**stage_kwargs), dropout=dropout)
        train(job, ctx)
        torch.save(job.model.state_dict(), Path(out_dir) / f"rank{rank}.pt")
    finally:
        shutdown_distributed(ctx)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])


def lock_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """torch.multiprocessing.spawn target: every rank enters `output_lock`; writes rank<r>.txt with the outcome."""
    import os

    from stcl.train.distributed import init_distributed, shutdown_distributed
    from stcl.train.lock import OutputInUseError, output_lock

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    ctx = init_distributed("cpu")
    try:
        with output_lock(out_dir, ctx) as lock:
            outcome = f"held {lock is not None}"
    except OutputInUseError as err:
        outcome = f"refused {err}"
    finally:
        shutdown_distributed(ctx)
    Path(out_dir, f"rank{rank}.txt").write_text(outcome)
