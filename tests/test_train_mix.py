"""Deterministic dataset mixing, per-rank sampling and accumulation arithmetic."""

from __future__ import annotations

from collections import Counter

import pytest

from stcl.train.mix import MixBatchSampler, MixedDataset, MixPlan, grad_accum_steps


def test_grad_accum_steps() -> None:
    assert grad_accum_steps(16, 8, 2) == 1
    assert grad_accum_steps(16, 1, 2) == 8
    assert grad_accum_steps(16, 2, 2) == 4
    with pytest.raises(ValueError, match="batch_size=16 is not a multiple"):
        grad_accum_steps(16, 3, 2)


def test_plan_is_deterministic_and_follows_weights() -> None:
    a = MixPlan([10, 7], [3.0, 1.0], iters=4000, batch_size=4, seed=5)
    b = MixPlan([10, 7], [3.0, 1.0], iters=4000, batch_size=4, seed=5)
    assert (a.choices == b.choices).all()
    share = (a.choices == 0).mean()
    assert 0.72 < share < 0.78
    c = MixPlan([10, 7], [3.0, 1.0], iters=4000, batch_size=4, seed=6)
    assert (a.choices != c.choices).any()


def test_each_epoch_visits_every_sample_once() -> None:
    plan = MixPlan([6], [1.0], iters=6, batch_size=3, seed=0)
    keys = [k for it in range(6) for k in plan.global_batch(it)]  # 18 positions = 3 epochs of 6
    for epoch in range(3):
        idx = [i for d, i, e in keys if e == epoch]
        assert sorted(idx) == list(range(6))
    assert [i for _, i, e in keys if e == 0] != [i for _, i, e in keys if e == 1]  # reshuffled per epoch


def test_ranks_split_the_same_global_batch() -> None:
    plan = MixPlan([11, 5], [1.0, 1.0], iters=20, batch_size=8, seed=1)
    for it in range(20):
        one = [k for mb in plan.micro_batches(it, 0, 1, 2) for k in mb]  # 1 process, 4 micro-batches
        two = [k for r in range(2) for mb in plan.micro_batches(it, r, 2, 2) for k in mb]
        four = [k for r in range(4) for mb in plan.micro_batches(it, r, 4, 2) for k in mb]
        assert one == plan.global_batch(it)
        assert Counter(two) == Counter(one) and Counter(four) == Counter(one)
        assert len({d for d, _, _ in one}) == 1  # one dataset per iteration


def test_sampler_resumes_at_any_iteration() -> None:
    plan = MixPlan([9, 4], [1.0, 2.0], iters=15, batch_size=4, seed=3)
    full = list(MixBatchSampler(plan, 0, 1, 2, 2))
    tail = list(MixBatchSampler(plan, 6, 1, 2, 2))
    assert len(full) == 15 and full[6:] == tail
    assert plan.cursors(6) == [4 * int((plan.choices[:6] == d).sum()) for d in range(2)]


def test_mixed_dataset_sets_epoch_before_reading() -> None:
    class Recorder:
        epoch = -1

        def set_epoch(self, e: int) -> None:
            self.epoch = e

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> tuple[int, int]:
            return i, self.epoch

    ds = MixedDataset([Recorder(), Recorder()])
    assert ds[(1, 2, 7)] == (2, 7)
    assert len(ds) == 6


def test_bad_plans_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        MixPlan([0], [1.0], iters=2, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="weights must be > 0"):
        MixPlan([3, 3], [1.0, 0.0], iters=2, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="iteration 5"):
        MixPlan([3], [1.0], iters=5, batch_size=2, seed=0).global_batch(5)
