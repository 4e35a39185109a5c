"""Deterministic, resumable dataset mixing and per-rank sampling.

Clip items (T = 1 + references) and single-image items (T = 1) cannot share a batch, so the dataset is drawn
once per *iteration* (one global batch) with probability proportional to its mix weight. Everything is a
pure function of ``(seed, iteration)``:

* ``choices[i]``: the dataset of iteration ``i`` (one seeded draw for the whole run);
* each dataset has an endless stream of sample positions; iteration ``i`` consumes the next ``batch_size``
  positions of its dataset; position ``p`` is index ``perm(seed, d, p // len)[p % len]`` of a fresh
  permutation per pass ("epoch");
* the global batch is split into micro-batches: micro-batch ``m`` of rank ``r`` takes positions
  ``[(m * world + r) * bpd, (m * world + r + 1) * bpd)`` of that batch (a DistributedSampler-like split).

Resuming at iteration ``i`` therefore needs nothing but ``i``, and the same global batch is seen whatever the
number of processes (with ``world * bpd * accum == batch_size``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
from torch.utils.data import Dataset

__all__ = ["SampleKey", "MixPlan", "MixedDataset", "MixBatchSampler", "grad_accum_steps"]

SampleKey = tuple[int, int, int]  # (dataset index, sample index, epoch of that dataset's stream)


def grad_accum_steps(batch_size: int, world_size: int, batch_per_device: int) -> int:
    """Micro-batches per optimiser step so that ``world_size * batch_per_device * steps == batch_size``."""
    per_step = world_size * batch_per_device
    if batch_size <= 0 or batch_per_device <= 0 or world_size <= 0:
        raise ValueError("batch_size, batch_per_device and world_size must be positive")
    if batch_size % per_step:
        raise ValueError(
            f"batch_size={batch_size} is not a multiple of world_size × batch_per_device = "
            f"{world_size} × {batch_per_device}; gradient accumulation needs an integral number of steps"
        )
    return batch_size // per_step


class MixPlan:
    """Which samples every iteration of a run reads.

    Args:
        sizes: number of samples of each dataset (all > 0).
        weights: mix weight of each dataset (> 0); probabilities are weights / sum.
        iters: iterations of the run.
        batch_size: global batch size.
        seed: the stage seed.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], iters: int, batch_size: int, seed: int) -> None:
        if len(sizes) == 0 or len(sizes) != len(weights):
            raise ValueError(
                f"sizes and weights must be non-empty and of equal length, got {len(sizes)} and {len(weights)}"
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
        rng = np.random.default_rng([seed, 0x6D6978])  # "mix"
        self.choices = rng.choice(len(sizes), size=iters, p=w / w.sum()) if len(sizes) > 1 else np.zeros(iters, int)
        # batches_before[i] = how many earlier iterations drew the same dataset as iteration i
        self._batches_before = np.zeros(iters, dtype=np.int64)
        counts = np.zeros(len(sizes), dtype=np.int64)
        for i, d in enumerate(self.choices):
            self._batches_before[i] = counts[d]
            counts[d] += 1

    def dataset_at(self, it: int) -> int:
        return int(self.choices[it])

    def cursors(self, it: int) -> list[int]:
        """Sample positions consumed from each dataset's stream before iteration `it`."""
        counts = np.bincount(self.choices[:it], minlength=len(self.sizes))
        return [int(c) * self.batch_size for c in counts]

    def _key(self, d: int, pos: int) -> SampleKey:
        epoch, offset = divmod(pos, self.sizes[d])
        return d, int(_permutation(self.seed, d, epoch, self.sizes[d])[offset]), epoch

    def global_batch(self, it: int) -> list[SampleKey]:
        """The `batch_size` sample keys of iteration `it`, in order."""
        if not 0 <= it < self.iters:
            raise ValueError(f"iteration {it} is outside 0..{self.iters - 1}")
        d = self.dataset_at(it)
        start = int(self._batches_before[it]) * self.batch_size
        return [self._key(d, start + j) for j in range(self.batch_size)]

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
