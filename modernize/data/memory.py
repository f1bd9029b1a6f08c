"""Data sets held whole in memory: Fashion-MNIST's idx files, torchvision's CIFAR, generated
``synthetic`` images; resized once to the data part's resolution. Also :func:`subset`, the fixed
random subset of a data part's ``train_images`` / ``val_images`` for in-memory and folder data."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torchvision.transforms import v2

from ..errors import ConfigError
from ..recipe import DataPart
from .presets import base_transforms, eval_transforms
from .spec import DataSpec, InMemory, Split

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_ROOT = Path("data")
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


S = TypeVar("S", bound=Split)


def subset(split: S, count: int, *, seed: int) -> S:
    """``count`` images of ``split`` drawn with a generator of their own (``seed``: see
    ``data.seeds.subset_seed``); the whole split when ``count`` is 0 or not smaller."""
    if not count or count >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:count]
    return split.take(idx)


def fashion_dir(spec: DataSpec, *, download: bool, fetch: bool) -> Path:
    """The folder holding Fashion-MNIST's four idx files (``fetch``: download them if allowed)."""
    candidates = [Path(spec.path)] if spec.path else [FASHION_MNIST_DIR, DATA_ROOT / "FashionMNIST" / "raw"]
    for folder in candidates:
        if all((folder / f).is_file() for files in FASHION_FILES.values() for f in files):
            return folder
    if download and not spec.path:
        if fetch:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(DATA_ROOT), train=True, download=True)
            FashionMNIST(str(DATA_ROOT), train=False, download=True)
            return DATA_ROOT / "FashionMNIST" / "raw"
        return candidates[-1]
    where = " or ".join(str(c) for c in candidates)
    raise ConfigError(f"--data {spec}: Fashion-MNIST idx .gz files not found in {where} "
                      "(install the Debian package with the README's apt-get line, or pass --download)")


def read_idx(path: Path) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"{path}: cannot read as gzip: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ConfigError(f"{path}: not an idx file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ConfigError(f"{path}: idx header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def read_idx_pair(folder: Path, images: str, labels: str) -> InMemory:
    x, y = read_idx(folder / images), read_idx(folder / labels)
    if len(x) != len(y):
        raise ConfigError(f"{folder}: {images} has {len(x)} images but {labels} {len(y)} labels")
    return InMemory(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))


def check_cifar(spec: DataSpec, *, download: bool) -> None:
    root = Path(spec.path or DATA_ROOT)
    folder = root / ("cifar-10-batches-py" if spec.kind == "cifar10" else "cifar-100-python")
    if not folder.is_dir() and not download:
        raise ConfigError(f"--data {spec}: {folder} not found (pass --download to fetch it with torchvision)")


def cifar(spec: DataSpec, download: bool) -> dict[str, InMemory]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if spec.kind == "cifar10" else CIFAR100
    out = {}
    for split, train in (("train", True), ("val", False)):
        try:
            ds = cls(str(spec.path or DATA_ROOT), train=train, download=download)
        except RuntimeError as exc:
            raise ConfigError(f"--data {spec}: {exc}") from None
        out[split] = InMemory(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                              torch.tensor(ds.targets, dtype=torch.int64))
    return out


def synthetic(n: int) -> dict[str, InMemory]:
    """Learnable 16 px images: each class is a fixed random pattern plus noise."""
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(10, 3, 16, 16, generator=g)

    def make(count: int) -> InMemory:
        y = torch.randint(0, 10, (count,), generator=g)
        x = (0.6 * protos[y] + 0.4 * torch.rand(count, 3, 16, 16, generator=g)) * 255
        return InMemory(x.round().to(torch.uint8), y)

    return {"train": make(n), "val": make(max(10, n // 4))}


def resize(split: InMemory, part: DataPart, *, evaluation: bool = False) -> InMemory:
    """Bring a split to ``part.resolution`` once, by the rule streamed data follow per image
    (:func:`base_transforms` for training, :func:`eval_transforms` for evaluation): ``pad``
    zero-pads or centre-crops without rescaling (28 -> 32 keeps Fashion-MNIST's pixels),
    ``none`` resizes, ``rrc`` resizes for training (the random crop is drawn per batch) and
    resizes to ``resolution / eval_crop_pct`` then centre-crops for evaluation."""
    res = part.resolution
    if split.images.shape[-2:] == (res, res) and part.resize in (0, res) and (part.crop != "rrc" or not evaluation):
        return split
    tf = v2.Compose(eval_transforms(part, resolution=res) if evaluation else
                    base_transforms(part, resolution=res, streamed=False))
    images = torch.cat([tf(chunk) for chunk in split.images.split(2048)])
    return InMemory(images.contiguous(), split.labels)
