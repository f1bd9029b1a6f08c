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
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        classes, seen = None, {}
        for split in ("train", "val"):  # class folders and one image in each: cheap, before any write
            classes = _check_classes(spec, Path(spec.path or "") / split, classes, seen)


def load_data(spec: DataSpec, *, recipe: Recipe, seed: int = 0, download: bool = False) -> Data:
    """Load (and for in-memory sets resize once to ``recipe.resolution``) a data set; subsets
    from ``recipe.train_images`` / ``val_images`` are drawn with a fixed generator so every
    step of a run sees the same images."""
    check_data(spec, download=download)
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
                std=meta["std"], train=_resize(train, recipe), val=_resize(val, recipe, evaluation=True),
                native_resolution=meta["native"])


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


def _resize(split: InMemory, recipe: Recipe, *, evaluation: bool = False) -> InMemory:
    """Bring a split to ``recipe.resolution`` once, by the rule streamed data follow per image
    (:func:`base_transforms` for training, :func:`eval_transforms` for evaluation): ``pad``
    zero-pads or centre-crops without rescaling (28 -> 32 keeps Fashion-MNIST's pixels),
    ``none`` resizes, ``rrc`` resizes for training (the random crop is drawn per batch) and
    resizes to ``resolution / eval_crop_pct`` then centre-crops for evaluation."""
    res = recipe.resolution
    if split.images.shape[-2:] == (res, res) and recipe.resize in (0, res) and (recipe.crop != "rrc" or not evaluation):
        return split
    tf = v2.Compose(eval_transforms(recipe, resolution=res) if evaluation else
                    base_transforms(recipe, resolution=res, streamed=False))
    images = torch.cat([tf(chunk) for chunk in split.images.split(2048)])
    return InMemory(images.contiguous(), split.labels)


GREY_MEAN, GREY_STD = (0.449,), (0.226,)
"""ImageNet's statistics averaged over RGB, as timm does for 1-channel models."""


class BadImageError(ConfigError):
    """An image file of a folder data set that cannot be decoded (``bad_images = "fail"``)."""


def _eight_bit(img: Any, path: str) -> Any:
    """16-bit grey images (PNG, TIFF: PIL modes ``I;16*`` and ``I``) scaled to 8 bits (x 255/65535),
    as 16-bit RGB PNGs already are by PIL: ``convert("L")`` alone clips every value above 255 to
    white. Float pixels (mode ``F``) and 32-bit integers outside 0-65535 have no known range: refused."""
    import numpy as np
    from PIL import Image

    if not (img.mode.startswith("I;16") or img.mode in ("I", "F")):
        return img
    arr = np.asarray(img)
    if img.mode == "F" or arr.min() < 0 or arr.max() > 65535:
        raise ValueError(f"pixels of mode {img.mode} outside 0-65535 (no known range): save it as an 8- or "
                         "16-bit image")
    return Image.fromarray(np.rint(arr.astype(np.float64) / 257).astype(np.uint8), "L")


class ImageFolderSplit(torch.utils.data.Dataset):
    """One split of an ImageNet-layout folder: ``(path, class)`` samples, decoded with PIL in
    ``mode`` ('RGB' or 'L'), then ``transform``. An index may be ``(i, seed)``: the sample's
    random augmentation is then drawn from ``seed`` alone (a worker-count- and order-independent,
    resumable stream; the caller's RNG is left as it was)."""

    def __init__(self, root: Path, samples: list[tuple[str, int]], classes: list[str], *, mode: str,
                 transform: Any, bad_images: str = "fail") -> None:
        self.root, self.samples, self.classes = root, samples, classes
        self.targets = [c for _, c in samples]
        self.mode, self.transform, self.bad_images = mode, transform, bad_images

    def view(self, transform: Any, indices: Sequence[int] | None = None) -> ImageFolderSplit:
        """The same files (or a subset) with another transform."""
        samples = self.samples if indices is None else [self.samples[i] for i in indices]
        return ImageFolderSplit(self.root, samples, self.classes, mode=self.mode, transform=transform,
                                bad_images=self.bad_images)

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, i: int) -> tuple[Any, int]:
        from PIL import Image, UnidentifiedImageError

        n = len(self.samples)
        for k in range(n):
            path, target = self.samples[(i + k) % n]
            try:
                with Image.open(path) as img:
                    return _eight_bit(img, path).convert(self.mode), target
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                why = f"{path}: cannot decode image ({type(exc).__name__}: {exc})"
                if self.bad_images == "fail":
                    raise BadImageError(f"{why}; remove or replace it, or set the recipe key "
                                        "bad_images = \"skip\" to train without it") from None
                print(f"warning: {why}; skipped (bad_images = \"skip\")", file=sys.stderr, flush=True)
        raise BadImageError(f"{self.root}: no image of this split can be decoded")

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Tensor, int]:
        i, seed = index if isinstance(index, tuple) else (index, None)
        img, target = self._decode(i)
        if seed is None:
            return self.transform(img), target
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(img), target


def one_line(exc: BaseException) -> str:
    """The message of an error re-raised by a DataLoader worker (its text is a whole traceback)."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else str(exc)
    for prefix in (f"{type(exc).__module__}.{type(exc).__name__}: ", f"{type(exc).__name__}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


def _walk(spec: DataSpec, top: Path, seen: dict[tuple[int, int], str] | None = None
          ) -> Iterator[tuple[str, list[os.DirEntry[str]]]]:
    """``os.walk(top, followlinks=True)`` (top-down: each folder, then its non-folder entries), except
    that a folder reached twice -- a symlink loop such as ``loop -> .``, or two links to one folder,
    whose images would silently count twice -- is a ``ConfigError`` naming the link. ``seen`` shared
    between walks extends this to every class folder and both splits: one folder linked under two
    classes (two labels for each image) or under train/ and val/ (the test set trained on)."""
    seen = {} if seen is None else seen
    stack = [str(top)]
    while stack:
        folder = stack.pop()
        _read_once(spec, folder, seen, "leads to a folder already read ({}): a symlink loop or a second link to "
                                       "one folder, whose images would count twice; remove it")
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        files = [e for e in entries if not _is_dir(e)]
        yield folder, files
        stack.extend(e.path for e in reversed(entries) if _is_dir(e))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A link to itself raises ELOOP here: it is then no folder, and `_not_regular` treats it
    like a corrupt image (named, or skipped with ``bad_images = "skip"``)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _not_regular(entry: os.DirEntry[str]) -> bool:
    """A FIFO, socket, device or dangling link: opening it would block, or fail later."""
    try:
        return not entry.is_file()
    except OSError:
        return True


def _folder_split(spec: DataSpec, folder: Path, classes: list[str] | None, bad_images: str = "fail",
                  seen: dict[tuple[int, int], str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """torchvision's ``find_classes`` + ``make_dataset`` (same samples, same order), walked by
    :func:`_walk` (loops refused); a non-regular file with an image name (a FIFO would block the
    loader forever) is refused naming it, or skipped with a warning under ``bad_images = "skip"``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

    seen = {} if seen is None else seen
    splits = [Path(os.path.realpath(folder.parent / s)) for s in ("train", "val")]
    try:
        found, class_to_idx = find_classes(str(folder))
    except FileNotFoundError as exc:
        raise ConfigError(f"--data {spec}: {folder}: {one_line(exc)} (expected {folder}/<class>/<image>)") from None
    if classes is not None and found != classes:
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        raise ConfigError(f"--data {spec}: {folder} has other class folders than train/ "
                          f"(only here: {extra or 'none'}; missing here: {missing or 'none'})")
    samples: list[tuple[str, int]] = []
    for name in sorted(class_to_idx):
        before = len(samples)
        for _, files in sorted(_walk(spec, folder / name, seen), key=lambda t: t[0]):
            for e in files:
                if not e.name.lower().endswith(IMG_EXTENSIONS):
                    continue
                if _not_regular(e):
                    why = f"{e.path}: not a regular file (a FIFO, device or dangling link)"
                    if bad_images == "fail":
                        raise BadImageError(f"{why}; remove it, or set the recipe key bad_images = \"skip\"")
                    print(f"warning: {why}; skipped (bad_images = \"skip\")", file=sys.stderr, flush=True)
                    continue
                if e.is_symlink():  # a linked image: its target may already have a label
                    _check_link(spec, e.path, splits, seen)
                samples.append((e.path, class_to_idx[name]))
        if len(samples) == before:
            raise ConfigError(f"--data {spec}: class folder {folder / name} holds no image "
                              f"(extensions: {' '.join(IMG_EXTENSIONS)})")
    return found, samples


def _check_link(spec: DataSpec, path: str, splits: list[Path], seen: dict[tuple[int, int], str]) -> None:
    """A symlinked image is refused when its target is an image of the data set itself (inside a
    class folder of train/ or val/) or the target of an earlier link: it would count twice, under
    two labels or in both splits."""
    real = Path(os.path.realpath(path))
    for split in splits:
        if real.is_relative_to(split) and len(real.relative_to(split).parts) >= 2:
            raise ConfigError(f"--data {spec}: {path} links to an image already read ({real}), which would count "
                              "twice (under two labels, or in train/ and val/); remove the link")
    _read_once(spec, path, seen, "links to an image already read ({}), which would count twice (under two "
                                 "labels, or in train/ and val/); remove one of the links")


def _read_once(spec: DataSpec, path: str, seen: dict[tuple[int, int], str], why: str) -> None:
    """Record ``path``'s file identity in ``seen``; a second path to it is refused (``why``
    formatted with the first path)."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    if key in seen:
        raise ConfigError(f"--data {spec}: {path} " + why.format(seen[key]))
    seen[key] = path


def _check_classes(spec: DataSpec, folder: Path, classes: list[str] | None,
                   seen: dict[tuple[int, int], str] | None = None) -> list[str]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    found = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not found:
        raise ConfigError(f"--data {spec}: {folder} has no class folders (expected {folder}/<class>/<image>)")
    if classes is not None and found != classes:
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        raise ConfigError(f"--data {spec}: {folder} has other class folders than train/ "
                          f"(only here: {extra or 'none'}; missing here: {missing or 'none'})")
    for name in found:
        has_image = False
        for _folder, files in _walk(spec, folder / name, seen):
            if any(e.name.lower().endswith(IMG_EXTENSIONS) for e in files):
                has_image = True
                break
        if not has_image:
            raise ConfigError(f"--data {spec}: class folder {folder / name} holds no image "
                              f"(extensions: {' '.join(IMG_EXTENSIONS)})")
    return found


def _is_grey(samples: list[tuple[str, int]], probe: int = 16) -> bool:
    """True when every probed image (evenly spread over the split) is single-channel."""
    from PIL import Image

    step = max(1, len(samples) // probe)
    modes = set()
    for path, _ in samples[::step][:probe]:
        try:
            with Image.open(path) as img:
                modes.add(img.mode)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # a corrupt file is reported (or skipped) when it is read
    return bool(modes) and all(m in {"1", "L", "LA", "I", "F"} or m.startswith("I;16") for m in modes)


def _folder_subset(split: ImageFolderSplit, count: int, *, seed: int) -> ImageFolderSplit:
    if not count or count >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:count]
    return split.view(split.transform, idx.tolist())


def _imagefolder(spec: DataSpec, recipe: Recipe) -> Data:
    """Grey folders (every probed image single-channel, e.g. PNG digits) load as 1-channel
    images (``in_chans = 1``, like the in-memory Fashion-MNIST path); anything else as RGB."""
    root = Path(spec.path or "")
    res = recipe.resolution
    seen: dict[tuple[int, int], str] = {}  # one folder or linked image read twice is refused (see _walk)
    classes, train_samples = _folder_split(spec, root / "train", None, recipe.bad_images, seen)
    _, val_samples = _folder_split(spec, root / "val", classes, recipe.bad_images, seen)
    grey = _is_grey(train_samples)
    mode = "L" if grey else "RGB"
    train_tf = v2.Compose([v2.ToImage(), *base_transforms(recipe, resolution=res),
                           *sample_transforms(recipe, resolution=res)])
    val_tf = v2.Compose([v2.ToImage(), *eval_transforms(recipe, resolution=res)])
    train = _folder_subset(ImageFolderSplit(root / "train", train_samples, classes, mode=mode, transform=train_tf,
                                            bad_images=recipe.bad_images), recipe.train_images, seed=1234)
    val = _folder_subset(ImageFolderSplit(root / "val", val_samples, classes, mode=mode, transform=val_tf,
                                          bad_images=recipe.bad_images), recipe.val_images, seed=4321)
    mean, std = (GREY_MEAN, GREY_STD) if grey else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return Data(spec=spec, num_classes=len(classes), in_chans=1 if grey else 3, mean=mean, std=std,
                train=train, val=val, native_resolution=None, train_eval=train.view(val_tf))


# --- loaders -----------------------------------------------------------------------------------

def loader_workers() -> int:
    """Every core this process may use (divided among the processes of one machine under torchrun)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


_SOCKET_MAX = 107
"""Linux's AF_UNIX path limit (108 bytes with the terminating NUL)."""


def _worker_sockets_fit() -> bool:
    """DataLoader workers hand batches over through AF_UNIX sockets in multiprocessing's temp folder
    (``$TMPDIR/pymp-*/listener-*``); under a long TMPDIR that path does not fit, the worker fails
    to send and the loader waits forever. Then load in the main process, with one warning."""
    import multiprocessing.util

    try:
        folder = multiprocessing.util.get_temp_dir()
    except OSError as exc:
        reason = f"cannot make its temp folder ({exc})"
    else:
        if len(os.fsencode(folder)) + len("/listener-12345678") <= _SOCKET_MAX:
            return True
        reason = f"the temp folder {folder} is too long for a socket path ({_SOCKET_MAX} bytes)"
    if not getattr(_worker_sockets_fit, "warned", False):
        print(f"warning: data loader workers off: {reason}; images load in the main process "
              "(set TMPDIR to a short folder, e.g. /tmp)", file=sys.stderr, flush=True)
        _worker_sockets_fit.warned = True  # type: ignore[attr-defined]
    return False


class _Delegate(torch.utils.data.Sampler[Any]):
    """A sampler a persistent DataLoader keeps while the indices change per epoch: yields the
    current inner sampler's indices, as ``(i, seed)`` pairs when ``seeded``."""

    def __init__(self, seeded: bool) -> None:
        self.inner: Any = []
        self.seeded = seeded

    def __iter__(self) -> Iterator[Any]:
        if not self.seeded:
            return iter(self.inner)
        base = int(getattr(self.inner, "seed", 0)) * 1_000_003
        return (((i, (base + i) % 2**63)) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def stream(ds: torch.utils.data.Dataset, sampler: Any, *, batch: int, device: str, seeded: bool,
           drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of ``ds`` in ``sampler``'s order from a DataLoader that lives as long as ``ds``:
    every core as a worker, persistent workers, 4 batches prefetched per worker, pinned memory
    on GPU. A corrupt image ends in a one-line :class:`BadImageError` naming its file."""
    key = (batch, device, seeded, drop_last)
    cache = ds.__dict__.setdefault("_loaders", {})
    if key not in cache:
        workers = loader_workers() if _worker_sockets_fit() else 0
        # A generator of its own: a DataLoader otherwise draws its workers' base seed from the
        # global generator when its first iterator starts, which shifts every later draw (mixup,
        # drop path) by where the loader was created; a resumed job creates it mid-epoch. The
        # base seed does not matter here: every sample's randomness comes from its (index, seed).
        cache[key] = torch.utils.data.DataLoader(
            ds, batch_size=batch, sampler=_Delegate(seeded), drop_last=drop_last, num_workers=workers,
            pin_memory=device != "cpu", persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
            generator=torch.Generator().manual_seed(0))
    loader = cache[key]
    loader.sampler.inner = sampler
    try:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    except BadImageError as exc:
        raise BadImageError(one_line(exc)) from None


def close_loaders(data: Data) -> None:
    """Stop the worker processes of the loaders :func:`stream` keeps on ``data``'s data sets.
    Why not leave it to the garbage collector: a data set and its loaders form a reference
    cycle, freed half torn down, and the loader then waits its 5-s timeout for each worker that
    was never told to stop (31 s against 6 s for a 2-worker image-folder run, measured).
    Dropping the last reference while everything is intact stops the workers at once."""
    for ds in (data.train, data.val, data.train_eval):
        loaders = getattr(ds, "__dict__", {}).pop("_loaders", None)
        if loaders:
            loaders.clear()


# --- augmentation ------------------------------------------------------------------------------

def base_transforms(recipe: Recipe, *, resolution: int, streamed: bool = True) -> list[v2.Transform]:
    """The deterministic sizing before a training image's random augmentation: ``pad`` pads
    (zeros) or centre-crops to ``resolution`` without rescaling, so an image smaller than the
    crop is padded, never an error; ``none`` resizes; ``rrc`` leaves the size to the random
    crop (in-memory sets are resized once so that they stack)."""
    pre = _prescale(recipe)
    if recipe.crop == "pad":
        return [*pre, v2.CenterCrop(resolution)]
    if recipe.crop == "none" or not streamed:
        return [*pre, v2.Resize((resolution, resolution), antialias=True)]
    return pre


def eval_transforms(recipe: Recipe, *, resolution: int) -> list[v2.Transform]:
    """Evaluation preprocessing that matches the training crop: ``pad`` -> pad or centre-crop
    to ``resolution`` (no rescaling, as in training); ``rrc`` -> resize the short side to
    ``floor(resolution / eval_crop_pct)`` then centre-crop (224 -> 256 -> 224 at 0.875);
    ``none`` -> resize to ``resolution``."""
    pre = _prescale(recipe)
    if recipe.crop == "pad":
        return [*pre, v2.CenterCrop(resolution)]
    if recipe.crop == "none":
        return [*pre, v2.Resize((resolution, resolution), antialias=True)]
    return [*pre, v2.Resize(math.floor(resolution / recipe.eval_crop_pct), antialias=True),
            v2.CenterCrop(resolution)]


def _prescale(recipe: Recipe) -> list[v2.Transform]:
    """The recipe's ``resize`` (before any crop rule, train and eval alike), if any."""
    return [v2.Resize((recipe.resize, recipe.resize), antialias=True)] if recipe.resize else []


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


class BatchRandAugment:
    """torchvision's ``v2.RandAugment`` on a uint8 batch with per-image draws, without a
    Python loop over images: for each of ``num_ops`` rounds every image draws its op and sign
    as RandAugment does, then each (op, sign) group -- at most 27 -- is transformed in one
    batched call of torchvision's own op code. The distribution per image is RandAugment's;
    the draws come from torch's global generator (one vectorised draw per round)."""

    def __init__(self, num_ops: int, magnitude: int, num_bins: int = 31) -> None:
        self.ra = v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=num_bins)
        self.ops = list(self.ra._AUGMENTATION_SPACE.items())

    def draw(self, b: int) -> tuple[Tensor, Tensor]:
        """Per image and round: the op index and whether a signed op's magnitude is negated."""
        n = self.ra.num_ops
        return torch.randint(0, len(self.ops), (n, b)), torch.rand(n, b) <= 0.5

    def apply(self, x: Tensor, ops: Tensor, negate: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = x.clone()
        for r in range(ops.shape[0]):
            key = ops[r] * 2 + negate[r].long()
            for k in key.unique().tolist():
                name, (magnitudes_fn, signed) = self.ops[k // 2]
                if name == "Identity":
                    continue
                mags = magnitudes_fn(self.ra.num_magnitude_bins, h, w)
                mag = 0.0 if mags is None else float(mags[self.ra.magnitude])
                if signed and k % 2:
                    mag = -mag
                sel = (key == k).nonzero().squeeze(1)
                x[sel] = self.ra._apply_image_or_video_transform(x[sel], name, mag, interpolation=self.ra.interpolation,
                                                                 fill=self.ra._fill)
        return x

    def __call__(self, x: Tensor) -> Tensor:
        return self.apply(x, *self.draw(len(x)))


class BatchAugment:
    """Augment a batch: per-image transforms (each image draws its own parameters), normalise,
    per-image random erasing, then batch-level Mixup / CutMix (soft targets).

    Every random draw comes from torch's global generator, so a run's augmentation is
    reproduced exactly from the RNG state saved in a checkpoint."""

    def __init__(self, recipe: Recipe, *, num_classes: int, mean: tuple[float, ...], std: tuple[float, ...],
                 resolution: int, per_sample: bool = True) -> None:
        # Pad-crop, flip and RandAugment are drawn per image but applied to the whole batch at
        # once (RandAugment per (op, sign) group): a Python loop over images would cost more than
        # the model on CPU, and stall a GPU. Only RandomResizedCrop still runs image by image.
        self.batched = per_sample and recipe.crop != "rrc"
        self.pad = resolution // 8 if recipe.crop == "pad" else 0
        self.hflip = recipe.hflip
        tfs = [t for t in sample_transforms(recipe, resolution=resolution) if not isinstance(t, v2.RandAugment)] \
            if per_sample and not self.batched else []
        self.per_image = v2.Compose(tfs) if tfs else None
        self.randaug = BatchRandAugment(recipe.randaugment_ops, recipe.randaugment_magnitude) \
            if per_sample and recipe.randaugment_ops else None
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
        if self.randaug is not None:
            x = self.randaug(x)
        x = self.normalize(x)
        if self.erase is not None:
            x = torch.stack([self.erase(img) for img in x])
        if self.mix is not None:
            x, y = self.mix(x, y)
        return x, y


__all__ = ["BadImageError", "BatchAugment", "BatchRandAugment", "Data", "DataSpec", "ImageFolderSplit", "InMemory",
           "base_transforms", "check_data", "close_loaders", "eval_transforms", "load_data", "loader_workers",
           "sample_transforms", "stream"]
