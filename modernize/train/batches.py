"""The order of an epoch's training images: one fixed permutation per epoch (from
``seeds.data_order_seed``), cut into global batches, each rank taking its slice; a resumed
epoch skips the global batches already trained. With gradient accumulation the unit is the
effective batch (one optimizer step): each rank's slice of it is augmented as one batch and
only the forward and backward passes are cut into micro-batches (``loop.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data import Data
from ..errors import ConfigError
from ..recipe import Recipe
from ..roadmap import Step
from .dist import Dist


@dataclass(frozen=True)
class Batching:
    """How a job's batch is made: ``micro`` images per forward pass on each of ``world``
    processes, ``accum`` passes per optimizer step."""

    micro: int
    world: int
    accum: int

    @property
    def per_process(self) -> int:
        """Images per optimizer step on one process (the unit of data order and augmentation)."""
        return self.micro * self.accum

    @property
    def global_batch(self) -> int:
        """The effective global batch: what the lr scaling rule, the schedule and the fingerprint follow."""
        return self.micro * self.world * self.accum

    def describe(self) -> str:
        acc = f" x accum {self.accum}" if self.accum > 1 else ""
        return f"{self.world} process(es) x batch {self.micro}{acc} = global batch {self.global_batch}"


def batching(recipe: Recipe, world: int) -> Batching:
    """The recipe's batch on ``world`` processes; a ``global_batch`` that batch_size x processes
    does not divide is refused (one line)."""
    if not recipe.global_batch:
        return Batching(recipe.batch_size, world, recipe.accum_steps)
    per_step = recipe.batch_size * world
    if recipe.global_batch % per_step:
        raise ConfigError(f"recipe '{recipe.name}': global_batch {recipe.global_batch} is not a multiple of "
                          f"batch_size {recipe.batch_size} x {world} process(es) = {per_step}; use a process count "
                          f"that divides {recipe.global_batch // recipe.batch_size}, or set accum_steps instead")
    return Batching(recipe.batch_size, world, recipe.global_batch // per_step)


def epoch_order(n: int, *, batch: int, d: Dist, epoch_seed: int, skip: int) -> Tensor:
    """This rank's indices of an epoch: a fixed permutation of ``n`` (from ``epoch_seed``) cut
    into whole global batches, this rank's slice of each, from global batch ``skip`` on."""
    gb = batch * d.world
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed))
    return perm[skip * gb: n // gb * gb].view(-1, d.world, batch)[:, d.rank].reshape(-1)


def epoch_batches(data: Data, *, batch: int, d: Dist, epoch_seed: int, skip: int,
                  device: str) -> Iterator[tuple[Tensor, Tensor]]:
    """The epoch's batches for this rank; streamed samples draw their augmentation from
    (``epoch_seed``, index), so it does not depend on the worker count."""
    order = epoch_order(len(data.train), batch=batch, d=d, epoch_seed=epoch_seed, skip=skip)
    return data.train.batches(order, batch=batch, device=device, loaders=data.loaders, order_seed=epoch_seed,
                              drop_last=True)


def iters_per_epoch(data: Data, batch: int, d: Dist) -> int:
    return len(data.train) // (batch * d.world)


def check_batch(step: Step, recipe: Recipe, data: Data, d: Dist) -> None:
    b = batching(recipe, d.world)
    if iters_per_epoch(data, b.per_process, d) < 1:
        what = "batch_size" if b.accum == 1 else "batch_size x accum_steps"
        raise ConfigError(f"step '{step.name}': {len(data.train)} training images are fewer than "
                          f"one global batch of {b.global_batch} (recipe '{recipe.name}' {what})")
