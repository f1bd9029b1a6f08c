"""Loading a data set for training: :func:`check_data` (fail fast, before anything is written)
and :func:`load_data`, which returns a :class:`Data`: both splits, their statistics and the
owner of their DataLoaders. What a loaded set depends on besides ``--data`` is its
:class:`DataKey` (``data_key``): the recipe's data part, and for image folders its
augmentation part; no other recipe key reaches the loading code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torchvision.transforms import v2

from ..errors import ConfigError
from ..recipe import Augmentation, DataPart, Recipe
from .folder import GREY_MEAN, GREY_STD, ImageFolderSplit, check_classes, folder_split, is_grey
from .loaders import Loaders
from .memory import FASHION_FILES, check_cifar, cifar, fashion_dir, read_idx_pair, resize, subset, synthetic
from .presets import base_transforms, eval_transforms, sample_transforms
from .seeds import subset_seed
from .spec import DataSpec, InMemory, Split


@dataclass(frozen=True)
class DataKey:
    """Everything of a recipe that changes a loaded data set, as the recipe's own frozen parts:
    recipes with equal keys share one loaded set, and the loading code is given the key alone."""

    part: DataPart
    augmentation: Augmentation | None = None
    """Image folders only: their per-image transform augments while loading (in-memory sets
    are augmented on the batch, so their key leaves it out)."""

    def __post_init__(self) -> None:
        # A Recipe is a DataPart and an Augmentation too (its parts, flat): as a key it would
        # let every other recipe key split the cache, and reach the loading code.
        for value, kind in ((self.part, DataPart), (self.augmentation, Augmentation)):
            if value is not None and type(value) is not kind:
                raise TypeError(f"DataKey takes a {kind.__name__} (recipe.part({kind.__name__})), "
                                f"got a {type(value).__name__}")


def data_key(spec: DataSpec, recipe: Recipe) -> DataKey:
    """The key of the set ``recipe`` loads from ``spec``."""
    return DataKey(recipe.part(DataPart), recipe.part(Augmentation) if spec.kind == "imagefolder" else None)


@dataclass
class Data:
    spec: DataSpec
    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Split
    val: Split
    native_resolution: int | None
    train_eval: Split
    """The training images as evaluation preprocesses them (precise BN): the stored images in
    memory, the files through the evaluation transform when streamed."""
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


def load_data(spec: DataSpec, key: DataKey, *, download: bool = False, loader_workers: int | None = None) -> Data:
    """Load (and for in-memory sets resize once to the key's ``resolution``) a data set;
    subsets from ``train_images`` / ``val_images`` are drawn with a fixed generator so every
    step of a run sees the same images. ``loader_workers``: DataLoader workers per loader of
    streamed data (None: this process's share of the cores)."""
    check_data(spec, download=download)
    loaders = Loaders(loader_workers)
    part = key.part
    if spec.kind == "imagefolder":
        if key.augmentation is None:
            raise ValueError("load_data: an image folder augments while loading; its key needs the augmentation "
                             "part (data_key)")
        return _imagefolder(spec, part, key.augmentation, loaders)
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
    train = resize(subset(splits["train"], part.train_images, seed=subset_seed("train")), part)
    val = resize(subset(splits["val"], part.val_images, seed=subset_seed("val")), part, evaluation=True)
    return Data(spec=spec, num_classes=meta["num_classes"], in_chans=meta["in_chans"], mean=meta["mean"],
                std=meta["std"], train=train, val=val, native_resolution=meta["native"], train_eval=train,
                loaders=loaders)


def _imagefolder(spec: DataSpec, part: DataPart, augmentation: Augmentation, loaders: Loaders) -> Data:
    """Grey folders (every probed image single-channel, e.g. PNG digits) load as 1-channel
    images (``in_chans = 1``, like the in-memory Fashion-MNIST path); anything else as RGB."""
    root = Path(spec.path or "")
    res = part.resolution
    seen: dict[tuple[int, int], str] = {}  # one folder or linked image read twice is refused (see folder.walk)
    classes, train_samples = folder_split(spec, root / "train", None, part.bad_images, seen)
    _, val_samples = folder_split(spec, root / "val", classes, part.bad_images, seen)
    grey = is_grey(train_samples)
    mode = "L" if grey else "RGB"
    train_tf = v2.Compose([v2.ToImage(), *base_transforms(part, resolution=res),
                           *sample_transforms(part, augmentation, resolution=res)])
    val_tf = v2.Compose([v2.ToImage(), *eval_transforms(part, resolution=res)])
    train = subset(ImageFolderSplit(root / "train", train_samples, classes, mode=mode, transform=train_tf,
                                    bad_images=part.bad_images), part.train_images, seed=subset_seed("train"))
    val = subset(ImageFolderSplit(root / "val", val_samples, classes, mode=mode, transform=val_tf,
                                  bad_images=part.bad_images), part.val_images, seed=subset_seed("val"))
    mean, std = (GREY_MEAN, GREY_STD) if grey else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return Data(spec=spec, num_classes=len(classes), in_chans=1 if grey else 3, mean=mean, std=std,
                train=train, val=val, native_resolution=None, train_eval=train.view(val_tf), loaders=loaders)


def close_loaders(data: Data) -> None:
    """Stop the worker processes of ``data``'s loaders (``Loaders.close``)."""
    data.loaders.close()
