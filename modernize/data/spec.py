"""What ``--data`` names (:class:`DataSpec`, parsed and checked before anything is loaded),
what the training loop asks of a split (:class:`Split`) and the in-memory split
(:class:`InMemory`; the streamed one is ``folder.ImageFolderSplit``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

from torch import Tensor

from ..errors import ConfigError

KINDS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
MAX_SYNTHETIC = 1_000_000
"""synthetic:N holds N 16-px images in memory (1e6: 0.8 GB); more is a typo."""


@dataclass(frozen=True)
class DataSpec:
    kind: str
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        kind, _, path = text.partition(":")
        if kind not in KINDS:
            raise ConfigError(f"--data '{text}': unknown data set '{kind}' (valid: fashion-mnist[:DIR], "
                              "cifar10[:ROOT], cifar100[:ROOT], imagefolder:PATH, synthetic[:N])")
        if kind == "imagefolder" and not path:
            raise ConfigError(f"--data '{text}': imagefolder needs a path (imagefolder:PATH with train/ and val/)")
        if kind == "synthetic" and path and not (path.isdigit() and 20 <= int(path) <= MAX_SYNTHETIC):
            raise ConfigError(f"--data '{text}': synthetic:N needs an integer N >= 20 (at most {MAX_SYNTHETIC})")
        return cls(kind, path or None)

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}" if self.path else self.kind


class Streams(Protocol):
    """The owner of a data set's DataLoaders as a split sees it (``loaders.Loaders``)."""

    def stream(self, ds: Any, indices: Sequence[int], *, batch: int, device: str, order_seed: int | None = None,
               drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]: ...


class Split(Protocol):
    """One split of a loaded data set, held in memory or streamed: the loop asks every kind
    the same, so it never branches on where the images come from."""

    def __len__(self) -> int: ...

    def take(self, indices: Tensor) -> Self:
        """The samples at ``indices``, in that order (``memory.subset``)."""
        ...

    def batches(self, indices: Tensor, *, batch: int, device: str, loaders: Streams, order_seed: int | None = None,
                drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """The samples at ``indices`` in that order, ``batch`` at a time, on ``device``.
        ``order_seed``: the seed each streamed sample's augmentation derives from (in-memory
        images are augmented on the batch: none); ``loaders``: the data set's DataLoaders
        (used by streamed splits only)."""
        ...


@dataclass
class InMemory:
    """A whole split as uint8 NCHW images (already at the training resolution) + labels."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: Tensor) -> InMemory:
        """The images at ``indices``, in that order."""
        return InMemory(self.images[indices], self.labels[indices])

    def batches(self, indices: Tensor, *, batch: int, device: str, loaders: Streams, order_seed: int | None = None,
                drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """Sliced from the held tensors (no DataLoader: a batch is one indexing, the fast path)."""
        for i in range(0, len(indices), batch):
            idx = indices[i:i + batch]
            if drop_last and len(idx) < batch:
                return
            yield self.images[idx].to(device, non_blocking=True), self.labels[idx].to(device, non_blocking=True)
