"""Data sets for training: small ones held whole in memory (on the GPU when training there)
and augmented on the batch; ImageNet-style folders streamed through a DataLoader.

``--data`` specs:

* ``fashion-mnist`` or ``fashion-mnist:DIR`` -- the idx ``.gz`` files of the Debian package
  (``/usr/share/datasets/fashion-mnist/``), or of DIR; ``--download`` fetches them with
  torchvision into ``data/`` when they are missing.
* ``cifar10[:ROOT]`` / ``cifar100[:ROOT]`` -- torchvision's CIFAR under ROOT (default ``data``).
* ``imagefolder:PATH`` -- ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` (ImageNet layout).
* ``synthetic[:N]`` -- N generated, learnable images of 10 classes (tests, smoke runs).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

from .errors import ConfigError
from .recipe import Recipe

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_ROOT = Path("data")
_FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                  "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
KINDS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder", "synthetic")


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
        if kind == "synthetic" and path and not (path.isdigit() and int(path) >= 20):
            raise ConfigError(f"--data '{text}': synthetic:N needs an integer N >= 20")
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


@dataclass
class Data:
    spec: DataSpec
    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: InMemory | torch.utils.data.Dataset
    val: InMemory | torch.utils.data.Dataset
    native_resolution: int | None

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, InMemory)


# --- loading ---------------------------------------------------------------------------------

def check_data(spec: DataSpec, *, download: bool = False) -> None:
    """Fail fast (before any training) when a data path is missing."""
    if spec.kind == "fashion-mnist":
        _fashion_dir(spec, download=download, fetch=False)
    elif spec.kind in ("cifar10", "cifar100"):
        root = Path(spec.path or DATA_ROOT)
        folder = root / ("cifar-10-batches-py" if spec.kind == "cifar10" else "cifar-100-python")
        if not folder.is_dir() and not download:
            raise ConfigError(f"--data {spec}: {folder} not found (pass --download to fetch it with torchvision)")
    elif spec.kind == "imagefolder":
        for split in ("train", "val"):
            if not (Path(spec.path or "") / split).is_dir():
                raise ConfigError(f"--data {spec}: {Path(spec.path or '') / split} is not a folder "
                                  "(expected PATH/train/<class>/* and PATH/val/<class>/*)")


def load_data(spec: DataSpec, *, recipe: Recipe, seed: int = 0, download: bool = False) -> Data:
    """Load (and for in-memory sets resize once to ``recipe.resolution``) a data set; subsets
    from ``recipe.train_images`` / ``val_images`` are drawn with a fixed generator so every
    step of a run sees the same images."""
    check_data(spec, download=download)
    res = recipe.resolution
    if spec.kind == "imagefolder":
        return _imagefolder(spec, recipe)
    if spec.kind == "fashion-mnist":
        folder = _fashion_dir(spec, download=download, fetch=True)
        splits = {k: _read_idx_pair(folder, *files) for k, files in _FASHION_FILES.items()}
        meta = dict(num_classes=10, in_chans=1, mean=(0.286,), std=(0.353,), native=28)
    elif spec.kind in ("cifar10", "cifar100"):
        splits = _cifar(spec, download)
        meta = dict(num_classes=10 if spec.kind == "cifar10" else 100, in_chans=3,
                    mean=(0.507, 0.487, 0.441), std=(0.267, 0.256, 0.276), native=32)
    else:
        splits = _synthetic(int(spec.path or 512))
        meta = dict(num_classes=10, in_chans=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), native=16)
    train = _subset(splits["train"], recipe.train_images, seed=1234)
    val = _subset(splits["val"], recipe.val_images, seed=4321)
    return Data(spec=spec, num_classes=meta["num_classes"], in_chans=meta["in_chans"], mean=meta["mean"],
                std=meta["std"], train=_resize(train, res), val=_resize(val, res), native_resolution=meta["native"])


def _fashion_dir(spec: DataSpec, *, download: bool, fetch: bool) -> Path:
    candidates = [Path(spec.path)] if spec.path else [FASHION_MNIST_DIR, DATA_ROOT / "FashionMNIST" / "raw"]
    for folder in candidates:
        if all((folder / f).is_file() for files in _FASHION_FILES.values() for f in files):
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


def _read_idx(path: Path) -> np.ndarray:
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


def _read_idx_pair(folder: Path, images: str, labels: str) -> InMemory:
    x, y = _read_idx(folder / images), _read_idx(folder / labels)
    if len(x) != len(y):
        raise ConfigError(f"{folder}: {images} has {len(x)} images but {labels} {len(y)} labels")
    return InMemory(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))


def _cifar(spec: DataSpec, download: bool) -> dict[str, InMemory]:
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


def _synthetic(n: int) -> dict[str, InMemory]:
    """Learnable 16 px images: each class is a fixed random pattern plus noise."""
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(10, 3, 16, 16, generator=g)

    def make(count: int) -> InMemory:
        y = torch.randint(0, 10, (count,), generator=g)
        x = (0.6 * protos[y] + 0.4 * torch.rand(count, 3, 16, 16, generator=g)) * 255
        return InMemory(x.round().to(torch.uint8), y)

    return {"train": make(n), "val": make(max(10, n // 4))}


def _subset(split: InMemory, count: int, *, seed: int) -> InMemory:
    if not count or count >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:count]
    return InMemory(split.images[idx], split.labels[idx])


def _resize(split: InMemory, res: int) -> InMemory:
    """Zero-pad small gaps (28 -> 32 keeps Fashion-MNIST's pixels), resize otherwise."""
    h = split.images.shape[-1]
    if h == res:
        return split
    if h < res <= h + 8:
        lo = (res - h) // 2
        images = torch.nn.functional.pad(split.images, (lo, res - h - lo, lo, res - h - lo))
    else:
        images = v2.functional.resize(split.images, [res, res], antialias=True)
    return InMemory(images.contiguous(), split.labels)


def _imagefolder(spec: DataSpec, recipe: Recipe) -> Data:
    from torchvision.datasets import ImageFolder

    root = Path(spec.path or "")
    res = recipe.resolution
    train_tf = v2.Compose([v2.ToImage(), *sample_transforms(recipe, resolution=res)])
    val_tf = v2.Compose([v2.ToImage(), v2.Resize(int(res / 0.875), antialias=True), v2.CenterCrop(res)])
    try:
        train = ImageFolder(str(root / "train"), transform=train_tf)
        val = ImageFolder(str(root / "val"), transform=val_tf)
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError(f"--data {spec}: {exc}") from None
    if train.classes != val.classes:
        raise ConfigError(f"--data {spec}: train/ and val/ have different class folders")
    return Data(spec=spec, num_classes=len(train.classes), in_chans=3, mean=(0.485, 0.456, 0.406),
                std=(0.229, 0.224, 0.225), train=train, val=val, native_resolution=None)


# --- augmentation ------------------------------------------------------------------------------

def sample_transforms(recipe: Recipe, *, resolution: int) -> list[v2.Transform]:
    """Per-image uint8 augmentations of a recipe, in timm's order: crop, flip, RandAugment."""
    tfs: list[v2.Transform] = []
    if recipe.crop == "rrc":
        tfs.append(v2.RandomResizedCrop(resolution, scale=(recipe.crop_scale_min, 1.0), antialias=True))
    elif recipe.crop == "pad":
        tfs.append(v2.RandomCrop(resolution, padding=resolution // 8))
    if recipe.hflip:
        tfs.append(v2.RandomHorizontalFlip())
    if recipe.randaugment_ops:
        tfs.append(v2.RandAugment(num_ops=recipe.randaugment_ops, magnitude=recipe.randaugment_magnitude))
    return tfs


class BatchAugment:
    """Augment a batch: per-image transforms (each image draws its own parameters), normalise,
    per-image random erasing, then batch-level Mixup / CutMix (soft targets).

    Every random draw comes from torch's global generator, so a run's augmentation is
    reproduced exactly from the RNG state saved in a checkpoint."""

    def __init__(self, recipe: Recipe, *, num_classes: int, mean: tuple[float, ...], std: tuple[float, ...],
                 resolution: int, per_sample: bool = True) -> None:
        # Pad-crop and flip (the CIFAR / quick augmentations) are drawn per image but applied to
        # the whole batch at once: a Python loop per image would cost more than the model on CPU.
        self.batched = per_sample and recipe.crop != "rrc" and recipe.randaugment_ops == 0
        self.pad = resolution // 8 if recipe.crop == "pad" else 0
        self.hflip = recipe.hflip
        tfs = sample_transforms(recipe, resolution=resolution) if per_sample and not self.batched else []
        self.per_image = v2.Compose(tfs) if tfs else None
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.erase = v2.RandomErasing(p=recipe.random_erasing, value=0) if recipe.random_erasing > 0 else None
        mixers: list[v2.Transform] = []
        if recipe.mixup > 0:
            mixers.append(v2.MixUp(alpha=recipe.mixup, num_classes=num_classes))
        if recipe.cutmix > 0:
            mixers.append(v2.CutMix(alpha=recipe.cutmix, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if len(mixers) > 1 else (mixers[0] if mixers else None)

    def normalize(self, x: Tensor) -> Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def _pad_crop_flip(self, x: Tensor) -> Tensor:
        """RandomCrop(padding) + RandomHorizontalFlip with per-image parameters, batched."""
        b, _, h, w = x.shape
        if self.pad:
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (b,)).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (b,)).to(x.device)
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            bidx = torch.arange(b, device=x.device)[:, None, None, None]
            cidx = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[bidx, cidx, rows, cols]
        if self.hflip:
            flip = (torch.rand(b) < 0.5).to(x.device).view(b, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        return x

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.batched:
            x = self._pad_crop_flip(x)
        elif self.per_image is not None:
            x = torch.stack([self.per_image(img) for img in x])
        x = self.normalize(x)
        if self.erase is not None:
            x = torch.stack([self.erase(img) for img in x])
        if self.mix is not None:
            x, y = self.mix(x, y)
        return x, y


__all__ = ["BatchAugment", "Data", "DataSpec", "InMemory", "check_data", "load_data", "sample_transforms"]
