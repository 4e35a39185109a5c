"""Deterministic, resumable dataset mixing and per-rank sampling.

Datasets whose items have the same shape (the same frames T per item; every item is cropped to
``augment.crop_size``) form one *group* and share global batches: VSPW clips and pseudo-labelled clips are
one dataset for the student (paper 3.4: "We combine the pseudo data and training set to obtain a new
dataset. Then, we train our model on the new dataset."). Each position of a group's global batch draws its
dataset with probability proportional to the datasets' mix weights, as a shuffled concatenation of the
datasets (mmseg's ConcatDataset under its shuffling sampler) would, the weights taking the place of the
sizes. Clip items (T = 1 + references) and single-image items (T = 1, COCO / ADE20K) cannot be stacked into
one tensor, so between groups the draw is once per *iteration* (one global batch), with probability
proportional to the group's summed weight. Everything is a pure function of ``(seed, iteration)``:

* ``group_choices[i]``: the group of iteration ``i``; ``sources[i, j]``: the dataset of position ``j`` of its
  global batch (one uniform number per position, drawn once for the run, mapped through the weights of that
  iteration's group);
* each dataset has an endless stream of sample positions; iteration ``i`` consumes the next positions of
  each dataset, as many as its batch holds from it; position ``p`` is index ``perm(seed, d, p // len)[p % len]``
  of a fresh permutation per pass ("epoch");
* the global batch is split into micro-batches: micro-batch ``m`` of rank ``r`` takes positions
  ``[(m * world + r) * bpd, (m * world + r + 1) * bpd)`` of that batch (a DistributedSampler-like split).

Resuming at iteration ``i`` therefore needs nothing but ``i``, and the same global batch is seen whatever the
number of processes (with ``world * bpd * accum == batch_size``: `stcl.params.grad_accum_steps`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
from torch.utils.data import Dataset

from stcl.params import grad_accum_steps

__all__ = ["SampleKey", "MixPlan", "MixedDataset", "MixBatchSampler"]

SampleKey = tuple[int, int, int]  # (dataset index, sample index, epoch of that dataset's stream)


class MixPlan:
    """Which samples every iteration of a run reads (the module docstring gives the rule).

    Args:
        sizes: number of samples of each dataset (all > 0).
        weights: mix weight of each dataset (> 0): its expected share of the samples (weights / sum).
        iters: iterations of the run.
        batch_size: global batch size.
        seed: the stage seed.
        item_frames: frames per item of each dataset (``frames_per_item`` of the datasets); datasets with
            equal values share global batches, the others alternate batch by batch.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        iters: int,
        batch_size: int,
        seed: int,
        *,
        item_frames: Sequence[int],
    ) -> None:
        if len(sizes) == 0 or len(sizes) != len(weights) or len(sizes) != len(item_frames):
            raise ValueError(
                f"sizes, weights and item_frames must be non-empty and of equal length, got {len(sizes)}, "
                f"{len(weights)} and {len(item_frames)}"
            )
        if any(s <= 0 for s in sizes):
            raise ValueError(f"every dataset needs at least one sample, got sizes {list(sizes)}")
        w = np.asarray(weights, dtype=np.float64)
        if (w <= 0).any():
            raise ValueError(f"weights must be > 0, got {list(weights)}")
        self.sizes = [int(s) for s in sizes]
        self.iters = iters
        self.batch_size = batch_size
        self.seed = seed
        shapes = list(dict.fromkeys(int(t) for t in item_frames))  # groups in order of first appearance
        self.groups = [[d for d, t in enumerate(item_frames) if int(t) == shape] for shape in shapes]
        group_w = np.array([w[g].sum() for g in self.groups])
        rng = np.random.default_rng([seed, 0x6D6978])  # "mix"
        n = len(self.groups)
        self.group_choices = rng.choice(n, size=iters, p=group_w / group_w.sum()) if n > 1 else np.zeros(iters, int)
        # Each position's dataset within its iteration's group: a uniform number through the group's weights.
        u = np.random.default_rng([seed, 0x6D6978, 1]).random((iters, batch_size))
        self.sources = np.empty((iters, batch_size), dtype=np.int64)
        for g, members in enumerate(self.groups):
            rows = self.group_choices == g
            cdf = np.cumsum(w[members]) / w[members].sum()
            picks = np.minimum(np.searchsorted(cdf, u[rows], side="right"), len(members) - 1)
            self.sources[rows] = np.asarray(members)[picks]
        # consumed[i, d] = positions of dataset d's stream read before iteration i (row `iters`: the whole run)
        per_iter = np.stack([(self.sources == d).sum(1) for d in range(len(sizes))], axis=1)
        self._consumed = np.zeros((iters + 1, len(sizes)), dtype=np.int64)
        np.cumsum(per_iter, axis=0, out=self._consumed[1:])

    def cursors(self, it: int) -> list[int]:
        """Sample positions consumed from each dataset's stream before iteration `it`."""
        return [int(c) for c in self._consumed[it]]

    def _key(self, d: int, pos: int) -> SampleKey:
        epoch, offset = divmod(pos, self.sizes[d])
        return d, int(_permutation(self.seed, d, epoch, self.sizes[d])[offset]), epoch

    def global_batch(self, it: int) -> list[SampleKey]:
        """The `batch_size` sample keys of iteration `it`, in order."""
        if not 0 <= it < self.iters:
            raise ValueError(f"iteration {it} is outside 0..{self.iters - 1}")
        nxt = self._consumed[it].copy()
        keys = []
        for d in self.sources[it]:
            keys.append(self._key(int(d), int(nxt[d])))
            nxt[d] += 1
        return keys

    def micro_batches(self, it: int, rank: int, world_size: int, batch_per_device: int) -> list[list[SampleKey]]:
        """The micro-batches rank `rank` runs at iteration `it` (``accum`` lists of ``batch_per_device`` keys)."""
        accum = grad_accum_steps(self.batch_size, world_size, batch_per_device)
        batch = self.global_batch(it)
        out = []
        for m in range(accum):
            lo = (m * world_size + rank) * batch_per_device
            out.append(batch[lo : lo + batch_per_device])
        return out


@lru_cache(maxsize=64)
def _permutation(seed: int, dataset: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, dataset, epoch, 0x7065726D]).permutation(size)


class MixedDataset(Dataset):
    """Indexes several datasets by :data:`SampleKey`; sets the dataset's epoch first when it has ``set_epoch``.

    Items are the wrapped datasets' dicts ({"img": (T,3,H,W) uint8, "label": (T,H,W) uint8, ...}).
    """

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)  # type: ignore[arg-type]

    def __getitem__(self, key: SampleKey) -> dict:
        d, index, epoch = key
        ds = self.datasets[d]
        set_epoch = getattr(ds, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        return ds[index]


class MixBatchSampler:
    """Yields this rank's micro-batches (lists of keys) for iterations ``start .. iters-1`` in order."""

    def __init__(self, plan: MixPlan, start: int, rank: int, world_size: int, batch_per_device: int) -> None:
        if not 0 <= start <= plan.iters:
            raise ValueError(f"start must be in 0..{plan.iters}, got {start}")
        self.plan = plan
        self.start = start
        self.rank = rank
        self.world_size = world_size
        self.batch_per_device = batch_per_device
        self.accum = grad_accum_steps(plan.batch_size, world_size, batch_per_device)

    def __len__(self) -> int:
        return (self.plan.iters - self.start) * self.accum

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for it in range(self.start, self.plan.iters):
            yield from self.plan.micro_batches(it, self.rank, self.world_size, self.batch_per_device)
