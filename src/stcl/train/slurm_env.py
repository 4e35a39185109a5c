"""Rank, world size and rendezvous address of a process started by ``srun``, one task per GPU.

A multi-node training job runs ``srun --nodes N --ntasks-per-node G ... stcl train ...`` (see
workflow/rules/common.smk ``train_launcher``): Slurm starts N×G copies of the command and gives each the
step's environment. This module maps it to what ``torch.distributed`` reads, as mmengine's
``dist/utils.py`` does (``_init_dist_slurm``):

=========================  ==============================================================
``RANK``                   ``SLURM_PROCID`` (0..N×G-1, block distribution: node 0 first)
``LOCAL_RANK``             ``SLURM_LOCALID`` (0..G-1 on each node: selects the CUDA device)
``WORLD_SIZE``             ``SLURM_STEP_NUM_TASKS`` (N×G)
``MASTER_ADDR``            first host of ``SLURM_STEP_NODELIST`` (rank 0 runs there)
``MASTER_PORT``            ``15000 + SLURM_JOB_ID % 15000``
=========================  ==============================================================

Only a task of an ``srun`` step is mapped (``SLURM_STEP_NUM_TASKS`` set and above 1): the batch script of
a job and the one-task steps of the Snakemake plugin stay single processes. Values already set (torchrun,
or ``MASTER_ADDR``/``MASTER_PORT`` exported by the user) win. The port is a function of the job id so two
jobs sharing a node use different ports, and it stays below Linux's ephemeral range (32768-60999) where
outgoing connections take their local ports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["first_host", "master_port", "slurm_rendezvous"]

PORT_BASE = 15000
PORT_SPAN = 15000


def first_host(nodelist: str) -> str:
    """The first host name of a Slurm host list: ``"gpu[003-004,9],cpu1"`` → ``"gpu003"``.

    Each bracket takes the first value of its first range, keeping its zero padding, as
    ``scontrol show hostnames`` would list it first.
    """
    text = nodelist.strip()
    if not text:
        raise ValueError("empty Slurm node list")
    depth, end = 0, len(text)
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = i
            break
    first = text[:end]
    if first.count("[") != first.count("]"):
        raise ValueError(f"malformed Slurm node list {nodelist!r}")
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[-,]", m.group(1))[0], first)


def master_port(job_id: str | int) -> int:
    """Rendezvous port of a job: 15000..29999, a function of the job id (two jobs on a node differ)."""
    return PORT_BASE + int(job_id) % PORT_SPAN


def _integer(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    """The integer in variable ``name``; ``default`` when it is unset (None: it must be set)."""
    text = environ.get(name, "").strip()
    if not text:
        if default is None:
            raise ValueError(f"Slurm environment: {name} is not set (a task of a step with several tasks needs it)")
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"Slurm environment: {name} must be an integer, got {text!r}") from None


def slurm_rendezvous(environ: Mapping[str, str]) -> dict[str, str]:
    """The torch.distributed variables to add for an ``srun`` task, or {} outside a multi-task step.

    Args:
        environ: the process environment (``os.environ``).

    Returns:
        ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` (strings), except those
        ``environ`` already holds; {} when ``RANK`` is set (torchrun) or this is not a task of a step with
        several tasks.
    """
    if environ.get("RANK") or not environ.get("SLURM_STEP_NUM_TASKS"):
        return {}
    world = _integer(environ, "SLURM_STEP_NUM_TASKS")
    rank = _integer(environ, "SLURM_PROCID")
    local = _integer(environ, "SLURM_LOCALID", default=0)
    job = _integer(environ, "SLURM_JOB_ID" if environ.get("SLURM_JOB_ID") else "SLURM_JOBID", default=0)
    if world <= 1:
        return {}
    nodes = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodes and not environ.get("MASTER_ADDR"):
        raise ValueError("Slurm environment: SLURM_STEP_NODELIST is not set, so the master address is unknown")
    found = {
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(local),
        "MASTER_ADDR": first_host(nodes) if nodes else "",
        "MASTER_PORT": str(master_port(job)),
    }
    return {k: v for k, v in found.items() if not environ.get(k)}
