"""One srun task of a toy training job, for the layout tests (tests/test_train_nodes.py).

``python _nodes_fixtures.py OUT KILL_AT`` with the ``SLURM_*`` variables srun gives a task: the process
finds its rank, world size and master address through `stcl.train.distributed.init_distributed` (as
`stcl train` does), trains the toy job of `_train_fixtures` on CPU/gloo, saves its final weights to
``OUT/rank<r>.pt`` and exits 0, or 75 when it sent itself SIGTERM after iteration KILL_AT (0: never) and
stopped at a checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

import _train_fixtures as fx

# Global batch 8 = 2 ranks × 2 per device × 2 micro-batches (accumulation with DDP's no_sync), dropout on
# (per-rank RNG streams), a checkpoint every 3 iterations, the loss logged at every iteration.
STAGE = {"iters": 9, "batch_size": 8, "batch_per_device": 2, "checkpoint_every": 3, "log_every": 1}


def main(out_dir: str, kill_at: int) -> int:
    from stcl.exit_codes import EXIT_PREEMPTED
    from stcl.train.distributed import init_distributed, shutdown_distributed
    from stcl.train.loop import train

    torch.set_num_threads(1)
    ctx = init_distributed("cpu")

    def killer(it: int) -> None:
        if it == kill_at:
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        job = fx.toy_job(Path(out_dir), fx.toy_stage(**STAGE))
        result = train(job, ctx, callbacks=[killer] if kill_at else [])
        if not result.preempted:
            torch.save(job.model.state_dict(), Path(out_dir) / f"rank{ctx.rank}.pt")
    finally:
        shutdown_distributed(ctx)
    return EXIT_PREEMPTED if result.preempted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
