"""The process group: which rank this process is, and how many train together."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def group_from_env() -> Dist:
    """This process's place in the group ``torchrun`` launched (its environment), without
    joining it: checking a run needs the world size (batches, fingerprints), not the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(device: str) -> Dist:
    """Join the process group when launched by ``torchrun`` (NCCL on GPU, gloo on CPU); the
    engine's first step, once a run has been checked."""
    d = group_from_env()
    if not d.active:
        return d
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        torch.cuda.set_device(d.local_rank)
    return d


@contextlib.contextmanager
def process_group(device: str) -> Iterator[Dist]:
    """Join torchrun's group for one run and leave it (``destroy_process_group``) when the run
    ends or all ranks stop together, unless the caller had joined it already. A rank that exits
    still in its group lets Python finalize while a gloo thread still holds the last collective's
    tensors: the thread's decref then aborts the process ("terminate called without an active
    exception", SIGABRT) after a finished run. After another error the group is left as it is:
    a peer may still be in a collective, and leaving would wait for it."""
    joins = group_from_env().active and not dist.is_initialized()
    d = init_distributed(device)
    try:
        yield d
    except KeyboardInterrupt:  # a stop the ranks agreed on (``any_rank``): no collective in flight
        _leave(joins)
        raise
    else:
        _leave(joins)


def _leave(joined: bool) -> None:
    if joined and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def any_rank(flag: bool, d: Dist, device: str) -> bool:
    """Whether any rank's ``flag`` is set (a collective: every rank must call it at the same
    point). A stop request must be taken by all ranks together: a rank that stops alone leaves
    the others waiting in their next collective."""
    if not d.active:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
