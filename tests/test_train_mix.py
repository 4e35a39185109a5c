"""Deterministic dataset mixing, per-rank sampling and accumulation arithmetic."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from stcl.params import grad_accum_steps
from stcl.presets import preset_params
from stcl.train.mix import MixBatchSampler, MixedDataset, MixPlan


def test_grad_accum_steps() -> None:
    assert grad_accum_steps(16, 8, 2) == 1
    assert grad_accum_steps(16, 1, 2) == 8
    assert grad_accum_steps(16, 2, 2) == 4
    with pytest.raises(ValueError, match="batch_size=16 is not a multiple"):
        grad_accum_steps(16, 3, 2)


def test_plan_is_deterministic_and_follows_weights() -> None:
    a = MixPlan([10, 7], [3.0, 1.0], iters=4000, batch_size=4, seed=5, item_frames=[3, 1])
    b = MixPlan([10, 7], [3.0, 1.0], iters=4000, batch_size=4, seed=5, item_frames=[3, 1])
    assert (a.sources == b.sources).all()
    share = (a.group_choices == 0).mean()
    assert 0.72 < share < 0.78
    c = MixPlan([10, 7], [3.0, 1.0], iters=4000, batch_size=4, seed=6, item_frames=[3, 1])
    assert (a.sources != c.sources).any()


def test_items_of_different_shapes_take_whole_batches() -> None:
    """Clips (T = 3) and images (T = 1, ADE20K) cannot be stacked: one group per global batch; the two clip
    datasets of a stage still share their batches."""
    plan = MixPlan([10, 7, 5], [1.0, 1.0, 1.0], iters=300, batch_size=8, seed=2, item_frames=[3, 1, 3])
    for it in range(300):
        frames = {[3, 1, 3][d] for d, _, _ in plan.global_batch(it)}
        assert len(frames) == 1
    batches = [{d for d, _, _ in plan.global_batch(it)} for it in range(300)]
    assert {1} in batches and {0, 2} in batches


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_student_batches_combine_vspw_and_pseudo_in_the_params_share(preset) -> None:
    """Paper 3.4: the student trains on one dataset combining VSPW and the pseudo labels. Every position of a
    global batch is drawn from the union with the params' weights, so the pseudo share over N positions is
    binomial(N, p): within 4 standard deviations of p; and batches hold both sources as often as
    1 - p^B - (1-p)^B predicts (within 4 standard deviations of that count)."""
    sp = preset_params(preset).train_student
    assert [d.name for d in sp.datasets] == ["vspw", "pseudo"]
    weights = [d.weight for d in sp.datasets]
    p = weights[1] / sum(weights)
    iters, batch = 2000, sp.batch_size
    plan = MixPlan([300, 300], weights, iters=iters, batch_size=batch, seed=sp.seed, item_frames=[3, 3])
    sources = [[d for d, _, _ in plan.global_batch(it)] for it in range(iters)]
    n = iters * batch
    share = sum(b.count(1) for b in sources) / n
    assert abs(share - p) <= 4 * math.sqrt(p * (1 - p) / n), (share, p)
    both = sum(0 < b.count(1) < batch for b in sources)
    q = 1 - p**batch - (1 - p) ** batch
    assert abs(both - iters * q) <= 4 * math.sqrt(iters * q * (1 - q)), (both, iters * q)
    assert both > iters / 2  # most batches mix (tiny: q = 0.79 at 2:1 and B = 4; paper: 0.89 at 6.86:1, B = 16)


def test_ranks_split_the_same_global_batch() -> None:
    for frames in ([3, 3], [3, 1]):
        plan = MixPlan([11, 5], [1.0, 1.0], iters=20, batch_size=8, seed=1, item_frames=frames)
        for it in range(20):
            one = [k for mb in plan.micro_batches(it, 0, 1, 2) for k in mb]  # 1 process, 4 micro-batches
            two = [k for r in range(2) for mb in plan.micro_batches(it, r, 2, 2) for k in mb]
            four = [k for r in range(4) for mb in plan.micro_batches(it, r, 4, 2) for k in mb]
            assert one == plan.global_batch(it)
            assert Counter(two) == Counter(one) and Counter(four) == Counter(one)
            if frames == [3, 1]:
                assert len({d for d, _, _ in one}) == 1  # one dataset per iteration


@pytest.mark.parametrize("frames", [[3, 3], [3, 1]])
def test_sampler_resumes_at_any_iteration(frames) -> None:
    plan = MixPlan([9, 4], [1.0, 2.0], iters=15, batch_size=4, seed=3, item_frames=frames)
    full = list(MixBatchSampler(plan, 0, 1, 2, 2))
    tail = list(MixBatchSampler(plan, 6, 1, 2, 2))
    assert len(full) == 15 and full[6:] == tail
    before = [k for it in range(6) for k in plan.global_batch(it)]
    assert plan.cursors(6) == [sum(d == i for d, _, _ in before) for i in range(2)]
    # each dataset's stream is read in order, without gaps or repeats, across batches
    keys = [k for it in range(15) for k in plan.global_batch(it)]
    for d, size in ((0, 9), (1, 4)):
        mine = [(e, i) for dd, i, e in keys if dd == d]
        assert len(set(mine)) == len(mine) and all(e == j // size for j, (e, _) in enumerate(mine))


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
        MixPlan([0], [1.0], iters=2, batch_size=2, seed=0, item_frames=[1])
    with pytest.raises(ValueError, match="weights must be > 0"):
        MixPlan([3, 3], [1.0, 0.0], iters=2, batch_size=2, seed=0, item_frames=[1, 1])
    with pytest.raises(ValueError, match="item_frames"):
        MixPlan([3, 3], [1.0, 1.0], iters=2, batch_size=2, seed=0, item_frames=[1])
    with pytest.raises(ValueError, match="iteration 5"):
        MixPlan([3], [1.0], iters=5, batch_size=2, seed=0, item_frames=[1]).global_batch(5)
