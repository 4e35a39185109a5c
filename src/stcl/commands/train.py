"""`stcl train --stage NAME`: train one stage of params.yaml (torchrun-aware, resumable, preemption-safe).

Every path comes from the command line (the params file only gives the recipe and, for the dataset roots
not given, ``data.vspw_root`` / ``coco_root`` / ``ade_root``)::

    stcl train --stage train_stcl --params params.yaml --out results/models/train_stcl \
        --init results/models/pretrain_coco/model.pt --vspw data/VSPW_480p

Several processes: ``torchrun --nproc_per_node N -m stcl train ...`` (NCCL on GPUs, gloo on CPU), or across
nodes ``srun --nodes N --ntasks-per-node G ... stcl train ...`` (ranks from ``SLURM_*``: `stcl.train.slurm_env`).
Running the same command again resumes from the newest complete checkpoint under ``<out>/state`` of the
same params, on any nodes (``--restart`` starts afresh). A run that failed after its final checkpoint and
before model.pt was written only writes model.pt; a run whose model.pt was written is retrained, since a
workflow reruns it only when an input changed.

``--untrained`` writes the stage's model as its first step would start it (the ``--init`` weights, or the fresh
initialisation the stage's seed gives: exactly the weights iteration 0 of this run would see) as model.pt and
trains nothing: a negative control (an untrained teacher or ensemble member, benchmarks/recipe_claims.py).

Exit codes: 0 done; 1 error (including a NaN/inf loss, or ``--out`` in use by another `stcl train`: see
`stcl.train.lock`); 75 (EX_TEMPFAIL) after SIGTERM/SIGUSR1 and 130 after Ctrl-C, each once a checkpoint is
written: rerun (or requeue) the same command to continue.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stcl.params import TRAIN_STAGES, load_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", required=True, choices=TRAIN_STAGES, help="training stage of params.yaml")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--out", type=Path, required=True, help="output folder: model.pt, train_metrics.json, state/, dvclive/")
    p.add_argument("--init", type=Path, default=None, help="init weights (model.pt of the stage's `init`; required then)")
    p.add_argument("--vspw", type=Path, default=None, help="VSPW root (default: params data.vspw_root)")
    p.add_argument("--coco", type=Path, default=None, help="COCO panoptic root (default: params data.coco_root)")
    p.add_argument("--coco-semantic", type=Path, default=None, help="COCO semantic maps of `stcl prepare`")
    p.add_argument("--ade", type=Path, default=None, help="ADE20K root (default: params data.ade_root)")
    p.add_argument("--pseudo", type=Path, default=None, help="pseudo-label dataset (VSPW layout) of `stcl pseudo_label`")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: CUDA when available")
    p.add_argument("--restart", action="store_true", help="delete <out>/state first instead of resuming")
    p.add_argument("--untrained", action="store_true",
                   help="write model.pt as iteration 0 would start from, train nothing (a negative control)")


def run(args: argparse.Namespace) -> int:
    # OpenMP threads that spin while waiting collapse throughput on a shared, oversubscribed CPU (a tiny-stage
    # step took 2-4 s instead of 0.25-0.6 s with 2 threads at load 6-9 on 2 cores); passive waiting costs
    # little elsewhere. Only effective before torch is first imported; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch.distributed
    from stcl.train.distributed import init_distributed, shutdown_distributed
    from stcl.data.clips import DataPaths
    from stcl.train.lock import output_lock
    from stcl.train.loop import NonFiniteLossError, train
    from stcl.train.stage import build_job
    from stcl.train.state import CheckpointManager

    params = load_params(args.params)
    out = args.out
    paths = DataPaths(
        vspw=args.vspw or params.data.vspw_root,
        coco=args.coco or params.data.coco_root,
        coco_semantic=args.coco_semantic,
        ade=args.ade or params.data.ade_root,
        pseudo=args.pseudo,
    )
    # Several processes: each prints its rank, node and master before it waits for the others (one line per
    # rank, the first thing to read when a node hangs), for at most cluster.train.rendezvous_timeout_s.
    ctx = init_distributed(args.device, params.cluster.train.rendezvous_timeout_s)
    try:
        with output_lock(out, ctx):
            if args.restart and ctx.is_main:
                CheckpointManager(out / "state").clear()
            if args.restart and ctx.distributed:
                torch.distributed.barrier()
            job = build_job(params, args.stage, out, paths, init_path=args.init, is_main=ctx.is_main)
            if args.untrained:
                if ctx.is_main:
                    job.save_model(out / "model.pt", job.model, iterations=0)
                    print(f"stcl train: {args.stage} untrained (iteration 0); wrote {out / 'model.pt'}", flush=True)
                return 0
            result = train(job, ctx)
    except NonFiniteLossError as err:
        print(f"stcl train: error: {err}", file=sys.stderr)
        return 1
    finally:
        shutdown_distributed(ctx)
    if result.preempted:
        return result.exit_code
    if ctx.is_main:
        m = result.metrics
        print(
            f"stcl train: {args.stage} done: {m['iterations']} iterations, loss {m['first_loss']:.4f} → "
            f"{m['final_window_loss']:.4f}; wrote {out / 'model.pt'}",
            flush=True,
        )
    return 0
