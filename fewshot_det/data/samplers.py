"""Samplers whose order depends only on (seed, position): resumable and worker-independent.

Each yields ``(dataset_index, sample_seed)``, and ``TrainingSampler(batch_size=B)``
``(dataset_index, sample_seed, batch_seed)``. The sample seed drives that sample's
augmentation and the batch seed the choices its whole batch shares (``INPUT.SCALE_PER_BATCH``),
so a run resumed at iteration i sees exactly the batches, flips and scales the
uninterrupted run saw from iteration i on, whatever the number of workers.
"""
from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np
from torch.utils.data import Sampler


class TrainingSampler(Sampler):
    """Endless stream of a shuffled permutation per epoch, sharded across ranks.

    Args:
        size: dataset length.
        seed: the run's seed; epoch e uses the permutation of ``(seed, e)``.
        start: global sample position to start from (``iteration * total_batch_size`` on
            resume). Positions count samples across all ranks.
        rank, world_size: this process's shard (position p goes to rank p % world_size).
        batch_size: 0, or the total batch size (all ranks): each key then also carries
            ``batch_seed(seed, p // batch_size)``, the same for every sample of a batch.
    """

    def __init__(self, size: int, *, seed: int, shuffle: bool = True, start: int = 0,
                 rank: int = 0, world_size: int = 1, batch_size: int = 0):
        if size <= 0:
            raise ValueError("TrainingSampler needs a non-empty dataset")
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.start, self.rank, self.world_size = start, rank, world_size
        self.batch_size = batch_size

    def _perm(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[Tuple[int, ...]]:
        pos = self.start + (self.rank - self.start) % self.world_size
        while True:
            epoch, offset = divmod(pos, self.size)
            perm = self._perm(epoch)
            while offset < self.size:
                key = int(perm[offset]), sample_seed(self.seed, pos)
                if self.batch_size:
                    key += (batch_seed(self.seed, pos // self.batch_size),)
                yield key
                pos += self.world_size
                offset += self.world_size


def sample_seed(seed: int, position: int) -> int:
    """A 32-bit seed for the sample at ``position`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def batch_seed(seed: int, batch: int) -> int:
    """A 32-bit seed for batch ``batch`` of a run seeded with ``seed`` (a stream apart from
    the samples' seeds: three entropy words, not two)."""
    return int(np.random.SeedSequence([seed, batch, 1]).generate_state(1)[0])


class InferenceSampler(Sampler):
    """Every index once, in order; rank r gets the r-th contiguous chunk."""

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1):
        shard = (size + world_size - 1) // world_size
        self.indices = range(rank * shard, min(size, (rank + 1) * shard))

    def __iter__(self):
        return ((i, 0) for i in self.indices)

    def __len__(self) -> int:
        return len(self.indices)
