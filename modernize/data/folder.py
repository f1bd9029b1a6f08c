"""ImageNet-layout folders (``PATH/train/<class>/*``, ``PATH/val/<class>/*``): the walk that
lists the samples in torchvision's order while refusing symlink loops and images reached twice,
the cheap check before any write, and :class:`ImageFolderSplit`, the data set that decodes them.

Not a subclass of torchvision's ``DatasetFolder``: its constructor walks the folder on its own,
while here one walk state is shared by both splits (a folder linked under train/ and val/ is
refused), subsets and re-transformed views reuse the list without walking again, and an index
may carry its own augmentation seed."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from .spec import DataSpec, Streams

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

    def take(self, indices: Tensor) -> ImageFolderSplit:
        """The samples at ``indices``, in that order (``memory.subset``)."""
        return self.view(self.transform, indices.tolist())

    def __len__(self) -> int:
        return len(self.samples)

    def batches(self, indices: Tensor, *, batch: int, device: str, loaders: Streams, order_seed: int | None = None,
                drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """Decoded and transformed by ``loaders``' DataLoader workers (``spec.Split.batches``)."""
        yield from loaders.stream(self, indices.tolist(), batch=batch, device=device, order_seed=order_seed,
                                  drop_last=drop_last)

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


def walk(spec: DataSpec, top: Path, seen: dict[tuple[int, int], str] | None = None
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


def folder_split(spec: DataSpec, folder: Path, classes: list[str] | None, bad_images: str = "fail",
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
        for _, files in sorted(walk(spec, folder / name, seen), key=lambda t: t[0]):
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


def check_classes(spec: DataSpec, folder: Path, classes: list[str] | None,
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
        for _folder, files in walk(spec, folder / name, seen):
            if any(e.name.lower().endswith(IMG_EXTENSIONS) for e in files):
                has_image = True
                break
        if not has_image:
            raise ConfigError(f"--data {spec}: class folder {folder / name} holds no image "
                              f"(extensions: {' '.join(IMG_EXTENSIONS)})")
    return found


def is_grey(samples: list[tuple[str, int]], probe: int = 16) -> bool:
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
