"""What ``--data`` names (:class:`DataSpec`, parsed and checked before anything is loaded) and
the shape of an in-memory split (:class:`InMemory`)."""

from __future__ import annotations

from dataclasses import dataclass

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
