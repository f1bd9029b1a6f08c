"""The order of an epoch's training images: one fixed permutation per epoch (from
``seeds.data_order_seed``), cut into global batches, each rank taking its slice; a resumed
epoch skips the global batches already trained."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..data import Data, InMemory, Loaders
from ..errors import ConfigError
from ..recipe import Recipe
from ..roadmap import Step
from .dist import Dist


def batches_in_memory(split: InMemory, *, batch: int, d: Dist, epoch_seed: int, skip: int,
                      device: str) -> Iterator[tuple[Tensor, Tensor]]:
    """The epoch's global batches (fixed order from ``epoch_seed``), this rank's share of each."""
    n = len(split)
    gb = batch * d.world
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed))
    for i in range(skip, n // gb):
        idx = perm[i * gb + d.rank * batch: i * gb + (d.rank + 1) * batch]
        yield split.images[idx].to(device, non_blocking=True), split.labels[idx].to(device, non_blocking=True)


class OffsetSampler(torch.utils.data.Sampler[int]):
    """This rank's indices of an epoch's fixed permutation, from global batch ``skip`` on."""

    def __init__(self, n: int, *, batch: int, d: Dist, epoch_seed: int, skip: int) -> None:
        self.n, self.batch, self.d, self.seed, self.skip = n, batch, d, epoch_seed, skip

    def indices(self) -> list[int]:
        gb = self.batch * self.d.world
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed))
        out: list[int] = []
        for i in range(self.skip, self.n // gb):
            out += perm[i * gb + self.d.rank * self.batch: i * gb + (self.d.rank + 1) * self.batch].tolist()
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return max(0, self.n // (self.batch * self.d.world) - self.skip) * self.batch


def loader_batches(loaders: Loaders, ds: torch.utils.data.Dataset, *, batch: int, d: Dist, epoch_seed: int,
                   skip: int, device: str) -> Iterator[tuple[Tensor, Tensor]]:
    """Through ``loaders`` (persistent workers); each sample's augmentation is seeded from
    (epoch_seed, index), so it does not depend on the worker count."""
    sampler = OffsetSampler(len(ds), batch=batch, d=d, epoch_seed=epoch_seed, skip=skip)  # type: ignore[arg-type]
    yield from loaders.stream(ds, sampler, batch=batch, device=device, order_seed=epoch_seed, drop_last=True)


def epoch_batches(data: Data, *, batch: int, d: Dist, epoch_seed: int, skip: int,
                  device: str) -> Iterator[tuple[Tensor, Tensor]]:
    """The epoch's batches for this rank, in memory or streamed."""
    if data.in_memory:
        return batches_in_memory(data.train, batch=batch, d=d, epoch_seed=epoch_seed,  # type: ignore[arg-type]
                                 skip=skip, device=device)
    return loader_batches(data.loaders, data.train, batch=batch, d=d, epoch_seed=epoch_seed,  # type: ignore[arg-type]
                          skip=skip, device=device)


def iters_per_epoch(data: Data, batch: int, d: Dist) -> int:
    return len(data.train) // (batch * d.world)  # type: ignore[arg-type]


def check_batch(step: Step, recipe: Recipe, data: Data, d: Dist) -> None:
    gb = recipe.batch_size * d.world
    if iters_per_epoch(data, recipe.batch_size, d) < 1:
        raise ConfigError(f"step '{step.name}': {len(data.train)} training images are fewer than "  # type: ignore[arg-type]
                          f"one global batch of {gb} (recipe '{recipe.name}' batch_size)")
