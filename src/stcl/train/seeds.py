"""Each training run's seed stream: derived from ``(seed, run name)``, so runs of equal params are independent.

Every stage shares ``train.seed``. Seeded with it directly, `train_stcl`, `train_ade` and `train_student`
would read VSPW in the same order (`stcl.train.mix` is a pure function of the seed and the iteration), with
the same augmentation draws and dropout masks: three near-clones where the paper's ensembles combine
"three different models" (paper 3.4). The paper is silent on seeds; independent runs are what an ensemble
of separately trained models means (mmseg's train.py, with no ``--seed``, draws a fresh seed per run; we
derive one per run so that reruns stay reproducible).

`stage_seed` is the one derivation: a `numpy.random.SeedSequence` of the seed and the sha256 of the run's
name (a stable hash; Python's ``hash()`` of a string is salted per process). The name is the stage's
(``train_ade``) or its ``seed_stream`` (an ablation's own name, `stcl.ablations`). `stcl.train.stage.build_job`
calls it once; everything the run seeds reads the result (`TrainJob.seed`): the initial weights of fresh
layers, the sample order (`stcl.train.mix.MixPlan`), each dataset's augmentation draws (``seed + i`` for
dataset ``i``), the per-rank torch / numpy / python seeds (dropout, drop path: ``seed + rank``) and the data
loader's generator. The same name twice gives the same run.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["stage_seed"]


def stage_seed(seed: int, name: str) -> int:
    """The seed of run ``name`` under ``seed`` (params ``train.seed``): an integer in ``[0, 2**32)``."""
    if not name:
        raise ValueError("stage_seed: the run name must not be empty")
    words = np.frombuffer(hashlib.sha256(name.encode()).digest(), dtype="<u4").tolist()
    return int(np.random.SeedSequence([seed % 2**64, *words]).generate_state(1)[0])
