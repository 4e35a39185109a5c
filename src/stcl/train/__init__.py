"""Training engine: one loop for every stage (accumulation, DDP, AMP, exact resume, preemption, logging).

`stcl train --stage NAME` builds the stage with :func:`stcl.train.stage.build_job` and runs
:func:`stcl.train.loop.train`.
"""

from stcl.train.loop import NonFiniteLossError, TrainJob, TrainResult, train

__all__ = ["NonFiniteLossError", "TrainJob", "TrainResult", "train"]
