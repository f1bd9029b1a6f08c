"""The DataLoader life cycle of streamed data sets. A :class:`Loaders` object (one per loaded
data set, ``Data.loaders``) owns the persistent DataLoaders and their worker processes, and
stops them when it is closed; the data sets themselves hold no loader, so what a loader worker
receives (forked, or pickled when the process was spawned, as a local ``--workers`` process is)
is the file list and the transforms only."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from .folder import BadImageError, one_line
from .seeds import sample_seed

SOCKET_MAX = 107
"""Linux's AF_UNIX path limit (108 bytes with the terminating NUL)."""


def loader_workers(processes: int = 1) -> int:
    """This process's share of the cores: every core it may use, divided among the processes of
    one machine (``processes`` local workers, times torchrun's ``LOCAL_WORLD_SIZE``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, processes * int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def socket_problem() -> str | None:
    """Why DataLoader workers cannot work here, or None. They hand batches over through AF_UNIX
    sockets in multiprocessing's temp folder (``$TMPDIR/pymp-*/listener-*``); under a long
    TMPDIR that path does not fit, the worker fails to send and the loader waits forever."""
    import multiprocessing.util

    try:
        folder = multiprocessing.util.get_temp_dir()
    except OSError as exc:
        return f"cannot make its temp folder ({exc})"
    if len(os.fsencode(folder)) + len("/listener-12345678") <= SOCKET_MAX:
        return None
    return f"the temp folder {folder} is too long for a socket path ({SOCKET_MAX} bytes)"


class EpochSampler(torch.utils.data.Sampler[Any]):
    """The sampler a persistent DataLoader keeps across epochs: :meth:`set_epoch` gives it the
    next pass's indices and, for augmented data, the order seed that every sample's
    augmentation seed derives from (``seeds.sample_seed``); it then yields ``(index, seed)``."""

    def __init__(self) -> None:
        self.indices: Sequence[int] = ()
        self.order_seed: int | None = None

    def set_epoch(self, indices: Sequence[int], order_seed: int | None) -> None:
        self.indices, self.order_seed = indices, order_seed

    def __iter__(self) -> Iterator[Any]:
        seed = self.order_seed
        if seed is None:
            return iter(self.indices)
        return ((i, sample_seed(seed, i)) for i in self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Loaders:
    """The DataLoaders of one loaded data set, created on first use and kept (persistent
    workers) until :meth:`close`. ``workers`` per loader: None takes this process's share of
    the cores (:func:`loader_workers`); 0 loads in the main process."""

    def __init__(self, workers: int | None = None) -> None:
        self.requested = workers
        self._workers: int | None = None
        self._loaders: dict[tuple[Any, ...], tuple[torch.utils.data.Dataset, torch.utils.data.DataLoader,
                                                    EpochSampler]] = {}

    @property
    def workers(self) -> int:
        """The worker processes per loader, decided once (with one warning when sockets cannot work)."""
        if self._workers is None:
            problem = socket_problem()
            if problem:
                print(f"warning: data loader workers off: {problem}; images load in the main process "
                      "(set TMPDIR to a short folder, e.g. /tmp)", file=sys.stderr, flush=True)
            self._workers = 0 if problem else (loader_workers() if self.requested is None else self.requested)
        return self._workers

    def _loader(self, ds: torch.utils.data.Dataset, *, batch: int, device: str, seeded: bool,
                drop_last: bool) -> tuple[torch.utils.data.DataLoader, EpochSampler]:
        key = (id(ds), batch, device, seeded, drop_last)  # the entry keeps ds alive: its id stays unique
        if key not in self._loaders:
            workers = self.workers
            # A generator of its own: a DataLoader otherwise draws its workers' base seed from the
            # global generator when its first iterator starts, which shifts every later draw (mixup,
            # drop path) by where the loader was created; a resumed job creates it mid-epoch. The
            # base seed does not matter here: every sample's randomness comes from its (index, seed).
            sampler = EpochSampler()
            loader = torch.utils.data.DataLoader(
                ds, batch_size=batch, sampler=sampler, drop_last=drop_last, num_workers=workers,
                pin_memory=device != "cpu", persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                generator=torch.Generator().manual_seed(0))
            self._loaders[key] = (ds, loader, sampler)
        _, loader, sampler = self._loaders[key]
        return loader, sampler

    def stream(self, ds: torch.utils.data.Dataset, indices: Sequence[int], *, batch: int, device: str,
               order_seed: int | None = None, drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of ``ds`` in the order of ``indices`` (each sample seeded from ``order_seed``
        when given): every share of the cores as a worker, 4 batches prefetched per worker,
        pinned memory on GPU. A corrupt image ends in a one-line ``BadImageError`` naming it."""
        loader, sampler = self._loader(ds, batch=batch, device=device, seeded=order_seed is not None,
                                       drop_last=drop_last)
        sampler.set_epoch(indices, order_seed)
        try:
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        except BadImageError as exc:
            raise BadImageError(one_line(exc)) from None

    def close(self) -> None:
        """Stop every loader's worker processes now. Why not leave it to the garbage collector:
        a loader whose workers are not told to stop waits its 5-s timeout for each of them at
        exit (31 s against 6 s for a 2-worker image-folder run, measured); dropping the last
        reference while everything is intact stops them at once."""
        self._loaders.clear()
