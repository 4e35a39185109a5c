"""Process-group setup for single-process, torchrun and srun launches.

`stcl train` is started as one plain process, by ``torchrun --nproc_per_node N`` (one node), or by
``srun`` with one task per GPU (several nodes). torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
(and ``MASTER_ADDR``/``MASTER_PORT``); under srun `stcl.train.slurm_env` derives them from the step's
``SLURM_*`` variables. The backend is NCCL when
the process drives a CUDA device and gloo on CPU. Every helper here is a no-op in a single process, so the
training loop is written once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from stcl.train.slurm_env import slurm_rendezvous

__all__ = ["DistContext", "init_distributed", "shutdown_distributed", "all_gather_objects"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Attributes:
        rank: global rank, 0..world_size-1.
        world_size: number of processes.
        local_rank: rank on this node (selects the CUDA device).
        device: the device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes logs, metrics and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def init_distributed(device: str = "auto") -> DistContext:
    """Read the torchrun (or srun) environment and join the process group.

    Args:
        device: "auto" (CUDA when available, else CPU), "cpu" or "cuda".

    Returns:
        The context of this process. With ``WORLD_SIZE`` unset or 1 no process group is created.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    os.environ.update(slurm_rendezvous(os.environ))  # srun tasks: RANK/WORLD_SIZE/... from SLURM_*
    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world_size})")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shutdown_distributed(ctx: DistContext) -> None:
    """Leave the process group (if one was joined)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj: object, ctx: DistContext) -> list[object]:
    """The `obj` of every rank, in rank order (a collective)."""
    if not ctx.distributed:
        return [obj]
    out: list[object] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
