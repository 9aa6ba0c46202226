"""Seeding and the training data order: batch k of a run depends only on (seed, k)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch (all devices); optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may draw from the global state
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed numpy and Python from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - per-worker global state
    random.seed(seed)


class StepBatchSampler(Sampler[list[Any]]):
    """Endless batches of dataset indices; batch k depends only on (seed, k).

    Sample position p = k * batch_size + i reads epoch e = p // N of a permutation drawn from
    `np.random.default_rng([seed, e])`, so a run restarted at batch k sees exactly what an
    uninterrupted one sees. With `with_epoch` the sampler yields `(index, epoch)` pairs, which
    datasets with a `set_epoch` method (`SegmentationDataset`) accept as keys and use to seed each
    sample's augmentation from (seed, epoch, index), independently of worker processes.

    Args:
        num_samples: N, dataset length (> 0).
        batch_size: Samples per batch.
        seed: Run seed.
        start_batch: First batch index to yield.
        with_epoch: Yield `(index, epoch)` pairs instead of plain indices.
    """

    def __init__(
        self, num_samples: int, batch_size: int, *, seed: int, start_batch: int = 0, with_epoch: bool = False
    ) -> None:
        if num_samples <= 0:
            raise ValueError("the training set is empty")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self.with_epoch = with_epoch
        self._epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _index(self, position: int) -> Any:
        epoch, offset = divmod(position, self.num_samples)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self._epoch = epoch
        index = int(self._perm[offset])
        return (index, epoch) if self.with_epoch else index

    def batch(self, k: int) -> list[Any]:
        """Indices of batch k."""
        return [self._index(k * self.batch_size + i) for i in range(self.batch_size)]

    def __iter__(self) -> Iterator[list[Any]]:
        k = self.start_batch
        while True:
            yield self.batch(k)
            k += 1

    def __len__(self) -> int:  # pragma: no cover - endless; DataLoader only needs it for len()
        return 2**62
