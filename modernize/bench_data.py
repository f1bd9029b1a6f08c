"""``run_ablation.py bench-data``: how fast the input pipeline is, per DataLoader worker.

* Folder loader: decode + the recipe's per-image augmentation (e.g. ``paper``: RandomResizedCrop
  224, flip, RandAugment 2/9), timed in this process with one torch thread -- what one worker
  does -- over ImageNet-sized JPEGs (a folder you give, or one generated here). The workers a
  GPU needs = its training images/s / images/s per worker.
* In-memory batch augmentation (e.g. ``cifar100_gpu``): the batched pad-crop/flip +
  RandAugment against the per-image Python loop it replaced, interleaved, median of repeats.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from .data import (
    BatchAugment,
    DataSpec,
    ImageFolderSplit,
    base_transforms,
    check_data,
    folder_split,
    sample_transforms,
)
from .recipe import Augmentation, DataPart, Recipe


def make_jpegs(root: Path, n: int, *, classes: int = 10, seed: int = 0) -> Path:
    """``n`` ImageNet-sized JPEGs (short side 333-500 px, 4:3 or 3:4, quality 90; smooth random
    content plus noise, so they compress like photos rather than like static) in
    ``root/train/<class>/`` and a few in ``root/val/``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    noise = rng.integers(-12, 13, (700, 700, 3)).astype(np.int16)
    classes = max(1, min(classes, n))  # fewer images than classes: every class still in both splits
    for split, count in (("train", n), ("val", max(classes, n // 50))):
        for i in range(count):
            folder = root / split / f"c{i % classes:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            short = int(rng.integers(333, 501))
            w, h = (int(short * 4 / 3), short) if rng.random() < 0.7 else (short, int(short * 4 / 3))
            base = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
            oy, ox = int(rng.integers(0, 700 - h + 1)), int(rng.integers(0, 700 - w + 1))
            px = np.asarray(base, dtype=np.int16) + noise[oy:oy + h, ox:ox + w]
            Image.fromarray(px.clip(0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)
    return root


def worker_rate(root: Path, recipe: Recipe, *, images: int, repeats: int) -> tuple[list[float], list[float]]:
    """Images/s of decode + the recipe's training transform in one process, one torch thread:
    per CPU second of this process (what one uncontended core gives; robust to a busy
    machine) and per wall-clock second."""
    spec = DataSpec("imagefolder", str(root))
    check_data(spec)
    classes, samples = folder_split(spec, root / "train", None)
    res = recipe.resolution
    part, augmentation = recipe.part(DataPart), recipe.part(Augmentation)
    tf = v2.Compose([v2.ToImage(), *base_transforms(part, resolution=res),
                     *sample_transforms(part, augmentation, resolution=res)])
    ds = ImageFolderSplit(root / "train", samples, classes, mode="RGB", transform=tf, bad_images=part.bad_images)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n = min(images, len(ds))
        ds[0]  # warm-up (imports, allocator)
        cpu, wall = [], []
        for r in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            for i in range(n):
                ds[(r * n + i) % len(ds), r * n + i]
            cpu.append(n / (time.process_time() - c))
            wall.append(n / (time.perf_counter() - t))
        return cpu, wall
    finally:
        torch.set_num_threads(threads)


def batch_augment_speedup(recipe: Recipe, *, batch: int, repeats: int, channels: int = 3) -> dict[str, Any]:
    """The batched augmentation against the per-image loop it replaced (same transforms),
    interleaved (old, new, new, old, ...); paired ratios old time / new time."""
    res = recipe.resolution
    part, augmentation = recipe.part(DataPart), recipe.part(Augmentation)
    aug = BatchAugment(part, augmentation, num_classes=100, mean=(0.5,) * channels, std=(0.25,) * channels)
    per_image = v2.Compose(sample_transforms(part, augmentation, resolution=res))
    x = torch.randint(0, 256, (batch, channels, res, res), dtype=torch.uint8)

    def old() -> None:
        torch.stack([per_image(img) for img in x])

    def new() -> None:
        aug.images(x)

    old(), new()
    times: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(repeats):
        for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
            t = time.perf_counter()
            (old if name == "old" else new)()
            times[name].append(time.perf_counter() - t)
    ratios = [o / n for o, n in zip(times["old"], times["new"])]
    return {"old_img_s": batch / statistics.median(times["old"]), "new_img_s": batch / statistics.median(times["new"]),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def workers_needed(train_img_s: float, per_worker: float) -> int:
    return max(1, math.ceil(train_img_s / per_worker))


def folder_rate(root: Path | None, recipe: Recipe, *, generate: int, images: int, repeats: int,
                note: Callable[[str], None] = print) -> tuple[list[float], list[float]]:
    """:func:`worker_rate` over the image folder ``root``, or over ``generate`` JPEGs made in a
    temporary folder (deleted afterwards) when ``root`` is None."""
    if root is not None:
        return worker_rate(root, recipe, images=images, repeats=repeats)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        t = time.perf_counter()
        made = make_jpegs(Path(tmp), generate)
        note(f"generated {generate} ImageNet-sized JPEGs in {made} ({time.perf_counter() - t:.0f} s)")
        return worker_rate(made, recipe, images=images, repeats=repeats)


__all__ = ["batch_augment_speedup", "folder_rate", "make_jpegs", "worker_rate", "workers_needed"]
