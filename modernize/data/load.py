"""Loading a data set for training: :func:`check_data` (fail fast, before anything is written)
and :func:`load_data`, which returns a :class:`Data`: both splits, their statistics and the
owner of their DataLoaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.transforms import v2

from ..errors import ConfigError
from ..recipe import Recipe
from .folder import GREY_MEAN, GREY_STD, ImageFolderSplit, check_classes, folder_split, is_grey
from .loaders import Loaders
from .memory import FASHION_FILES, check_cifar, cifar, fashion_dir, read_idx_pair, resize, subset, synthetic
from .presets import base_transforms, eval_transforms, sample_transforms
from .seeds import subset_seed
from .spec import DataSpec, InMemory


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
    train_eval: torch.utils.data.Dataset | None = None
    """Streamed data: the training images through the evaluation preprocessing (precise BN)."""
    loaders: Loaders = field(default_factory=Loaders, repr=False, compare=False)
    """The DataLoaders of the streamed splits (closed by :func:`close_loaders`)."""

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, InMemory)


def check_data(spec: DataSpec, *, download: bool = False) -> None:
    """Fail fast (before any training) when a data path is missing."""
    if spec.kind == "fashion-mnist":
        fashion_dir(spec, download=download, fetch=False)
    elif spec.kind in ("cifar10", "cifar100"):
        check_cifar(spec, download=download)
    elif spec.kind == "imagefolder":
        for split in ("train", "val"):
            if not (Path(spec.path or "") / split).is_dir():
                raise ConfigError(f"--data {spec}: {Path(spec.path or '') / split} is not a folder "
                                  "(expected PATH/train/<class>/* and PATH/val/<class>/*)")
        classes, seen = None, {}
        for split in ("train", "val"):  # class folders and one image in each: cheap, before any write
            classes = check_classes(spec, Path(spec.path or "") / split, classes, seen)


def load_data(spec: DataSpec, *, recipe: Recipe, download: bool = False, loader_workers: int | None = None) -> Data:
    """Load (and for in-memory sets resize once to ``recipe.resolution``) a data set; subsets
    from ``recipe.train_images`` / ``val_images`` are drawn with a fixed generator so every
    step of a run sees the same images. ``loader_workers``: DataLoader workers per loader of
    streamed data (None: this process's share of the cores)."""
    check_data(spec, download=download)
    loaders = Loaders(loader_workers)
    if spec.kind == "imagefolder":
        return _imagefolder(spec, recipe, loaders)
    if spec.kind == "fashion-mnist":
        folder = fashion_dir(spec, download=download, fetch=True)
        splits = {k: read_idx_pair(folder, *files) for k, files in FASHION_FILES.items()}
        meta = dict(num_classes=10, in_chans=1, mean=(0.286,), std=(0.353,), native=28)
    elif spec.kind in ("cifar10", "cifar100"):
        splits = cifar(spec, download)
        meta = dict(num_classes=10 if spec.kind == "cifar10" else 100, in_chans=3,
                    mean=(0.507, 0.487, 0.441), std=(0.267, 0.256, 0.276), native=32)
    else:
        splits = synthetic(int(spec.path or 512))
        meta = dict(num_classes=10, in_chans=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), native=16)
    train = subset(splits["train"], recipe.train_images, seed=subset_seed("train"))
    val = subset(splits["val"], recipe.val_images, seed=subset_seed("val"))
    return Data(spec=spec, num_classes=meta["num_classes"], in_chans=meta["in_chans"], mean=meta["mean"],
                std=meta["std"], train=resize(train, recipe), val=resize(val, recipe, evaluation=True),
                native_resolution=meta["native"], loaders=loaders)


def _imagefolder(spec: DataSpec, recipe: Recipe, loaders: Loaders) -> Data:
    """Grey folders (every probed image single-channel, e.g. PNG digits) load as 1-channel
    images (``in_chans = 1``, like the in-memory Fashion-MNIST path); anything else as RGB."""
    root = Path(spec.path or "")
    res = recipe.resolution
    seen: dict[tuple[int, int], str] = {}  # one folder or linked image read twice is refused (see folder.walk)
    classes, train_samples = folder_split(spec, root / "train", None, recipe.bad_images, seen)
    _, val_samples = folder_split(spec, root / "val", classes, recipe.bad_images, seen)
    grey = is_grey(train_samples)
    mode = "L" if grey else "RGB"
    train_tf = v2.Compose([v2.ToImage(), *base_transforms(recipe, resolution=res),
                           *sample_transforms(recipe, resolution=res)])
    val_tf = v2.Compose([v2.ToImage(), *eval_transforms(recipe, resolution=res)])
    train = subset(ImageFolderSplit(root / "train", train_samples, classes, mode=mode, transform=train_tf,
                                    bad_images=recipe.bad_images), recipe.train_images, seed=subset_seed("train"))
    val = subset(ImageFolderSplit(root / "val", val_samples, classes, mode=mode, transform=val_tf,
                                  bad_images=recipe.bad_images), recipe.val_images, seed=subset_seed("val"))
    mean, std = (GREY_MEAN, GREY_STD) if grey else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return Data(spec=spec, num_classes=len(classes), in_chans=1 if grey else 3, mean=mean, std=std,
                train=train, val=val, native_resolution=None, train_eval=train.view(val_tf), loaders=loaders)


def close_loaders(data: Data) -> None:
    """Stop the worker processes of ``data``'s loaders (``Loaders.close``)."""
    data.loaders.close()
