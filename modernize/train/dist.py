"""The process group: which rank this process is, and how many train together."""

from __future__ import annotations

import os
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
