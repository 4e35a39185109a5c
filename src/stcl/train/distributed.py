"""Process-group setup for single-process, torchrun and srun launches.

`stcl train` is started as one plain process, by ``torchrun --nproc_per_node N`` (one node), or by
``srun`` with one task per GPU (several nodes). torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
(and ``MASTER_ADDR``/``MASTER_PORT``); under srun `stcl.train.slurm_env` derives them from the step's
``SLURM_*`` variables. The backend is NCCL when
the process drives a CUDA device and gloo on CPU. Every helper here is a no-op in a single process, so the
training loop is written once.

Rendezvous (several processes): each process first prints where it waits (``rank R/W (local L) on NODE,
master ADDR:PORT: waiting for the other ranks``), so that the log of a job whose rendezvous never completes still
names every process that started. Rank 0 serves a TCPStore at ``MASTER_ADDR:MASTER_PORT`` (torchrun's agent
serves it under torchrun), every rank counts itself in, and all wait until W ranks have arrived, for at most
``timeout_s`` (params ``cluster.train.rendezvous_timeout_s``); then `UnavailableError` (exit 69) names the
master, how many ranks arrived and how long it waited. The wait is a loop of short steps in Python, so the
command's SIGTERM/SIGINT handlers run within a second (exit 75 / 130), where torch's own rendezvous would
block in C for up to 30 minutes, deaf to both.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from stcl.exit_codes import UnavailableError
from stcl.train.slurm_env import slurm_rendezvous

__all__ = ["DEFAULT_RENDEZVOUS_TIMEOUT_S", "DistContext", "init_distributed", "shutdown_distributed", "all_gather_objects"]

DEFAULT_RENDEZVOUS_TIMEOUT_S = 600.0  # as params cluster.train.rendezvous_timeout_s
_STEP_S = 0.5  # longest time spent in C (signals wait for it) while connecting or counting
_ARRIVED, _LEFT, _CLOSED = "arrived", "left", "closed"  # rendezvous keys (under a per-attempt prefix)


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


def _serves_store(rank: int) -> bool:
    return rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"


def _connect(addr: str, port: int, rank: int, deadline: float, timeout_s: float) -> dist.TCPStore:
    """The rendezvous store: served by rank 0 (unless torchrun's agent serves it), reached by the others.

    A client first waits for the port to accept connections with plain sockets (Python: signals are handled
    between attempts, and c10d logs no stack trace per refused attempt), then connects the store.
    """
    if _serves_store(rank):
        try:
            return dist.TCPStore(addr, port, None, True, timedelta(seconds=timeout_s), wait_for_workers=False)
        except RuntimeError as err:  # DistNetworkError: the port is taken, the address is not this host's
            raise ValueError(f"MASTER_ADDR:MASTER_PORT {addr}:{port}: rank 0 cannot serve the rendezvous ({err})") from None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UnavailableError(
                f"rank {rank}: no rendezvous at master {addr}:{port} (rank 0) within {timeout_s:g} s "
                "(cluster.train.rendezvous_timeout_s): did rank 0 start?"
            )
        try:
            socket.create_connection((addr, port), timeout=min(_STEP_S, left)).close()
        except OSError:  # refused (not listening yet), unreachable, not resolvable (yet): try again
            time.sleep(min(_STEP_S / 5, max(0.0, deadline - time.monotonic())))
            continue
        try:
            return dist.TCPStore(addr, port, None, False, timedelta(seconds=max(left, 1.0)), wait_for_workers=False)
        except RuntimeError:  # the server went away between the probe and the connection: probe again
            continue


def _rendezvous(rank: int, world: int, timeout_s: float) -> dist.Store:
    """Wait (in short steps) until all `world` ranks have counted themselves in; the store, for the group."""
    addr, port = os.environ.get("MASTER_ADDR") or "", os.environ.get("MASTER_PORT") or ""
    if not addr or not port.isdigit():
        raise ValueError(f"MASTER_ADDR / MASTER_PORT: a rendezvous address is needed, got {addr!r}:{port!r}")
    deadline = time.monotonic() + timeout_s
    raw = _connect(addr, int(port), rank, deadline, timeout_s)
    raw.set_timeout(timedelta(seconds=timeout_s))
    # torchrun's agent keeps its store across restarts of the workers: each attempt counts in its own keys
    store = dist.PrefixStore(f"stcl/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", raw)
    serving = _serves_store(rank)

    def timed_out() -> UnavailableError:
        return UnavailableError(
            f"rank {rank}: only {arrived} of {world} ranks arrived at master {addr}:{port} within {timeout_s:g} s "
            f"(cluster.train.rendezvous_timeout_s); the log lines `rank R/{world}` name those that started"
        )

    arrived = store.add(_ARRIVED, 1)
    try:
        while arrived < world:
            if time.monotonic() >= deadline:
                raise timed_out()
            time.sleep(min(_STEP_S / 5, max(0.0, deadline - time.monotonic())))
            arrived = store.add(_ARRIVED, 0)
            if not serving and store.check([_CLOSED]):
                if store.get(_CLOSED) == b"timeout":  # rank 0's time ran out a moment before this rank's
                    raise timed_out()
                raise UnavailableError(
                    f"rank {rank}: rank 0 left the rendezvous at master {addr}:{port} ({arrived} of {world} ranks "
                    "had arrived)"
                )
    except BaseException as err:  # a timeout, SIGTERM, Ctrl-C: leave so that the others end in one line too
        _leave(store, serving, "timeout" if isinstance(err, UnavailableError) else "left")
        raise
    return store


def _leave(store: dist.Store, serving: bool, why: str) -> None:
    """Count out of a failed rendezvous. The rank serving the store says it closes, then waits (a few
    seconds at most) until the ranks that arrived have counted out, so none of them loses the store mid-call."""
    try:
        if not serving:
            store.add(_LEFT, 1)
            return
        store.set(_CLOSED, why)
        until = time.monotonic() + 10 * _STEP_S
        while store.add(_LEFT, 0) < store.add(_ARRIVED, 0) - 1 and time.monotonic() < until:
            time.sleep(_STEP_S / 5)
    except RuntimeError:  # the store is gone already: nothing to tell
        pass


def init_distributed(device: str = "auto", rendezvous_timeout_s: float = DEFAULT_RENDEZVOUS_TIMEOUT_S) -> DistContext:
    """Read the torchrun (or srun) environment and join the process group.

    Args:
        device: "auto" (CUDA when available, else CPU), "cpu" or "cuda".
        rendezvous_timeout_s: how long to wait for the other processes (see the module docstring).

    Returns:
        The context of this process. With ``WORLD_SIZE`` unset or 1 no process group is created.

    Raises:
        UnavailableError: the other ranks did not all arrive within ``rendezvous_timeout_s``.
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
        node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
        print(
            f"stcl train: rank {rank}/{world_size} (local {local_rank}) on {node}, master "
            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}: waiting for the other ranks "
            f"(at most {rendezvous_timeout_s:g} s)",
            flush=True,
        )
        store = _rendezvous(rank, world_size, rendezvous_timeout_s)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", store=store, rank=rank, world_size=world_size)
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
