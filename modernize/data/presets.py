"""Transform presets: the deterministic sizing of training and evaluation images (``pad``,
``none``, ``rrc``: the recipe's ``DataPart``) and the per-image random augmentations (its
``Augmentation`` part), in timm's order. Streamed data apply them per image; in-memory data are
sized once (``memory.resize``) and augmented on the batch (``augment.BatchAugment``)."""

from __future__ import annotations

import math

from torchvision.transforms import v2

from ..recipe import Augmentation, DataPart


def base_transforms(part: DataPart, *, resolution: int, streamed: bool = True) -> list[v2.Transform]:
    """The deterministic sizing before a training image's random augmentation: ``pad`` pads
    (zeros) or centre-crops to ``resolution`` without rescaling, so an image smaller than the
    crop is padded, never an error; ``none`` resizes; ``rrc`` leaves the size to the random
    crop (in-memory sets are resized once so that they stack)."""
    pre = _prescale(part)
    if part.crop == "pad":
        return [*pre, v2.CenterCrop(resolution)]
    if part.crop == "none" or not streamed:
        return [*pre, v2.Resize((resolution, resolution), antialias=True)]
    return pre


def eval_transforms(part: DataPart, *, resolution: int) -> list[v2.Transform]:
    """Evaluation preprocessing that matches the training crop: ``pad`` -> pad or centre-crop
    to ``resolution`` (no rescaling, as in training); ``rrc`` -> resize the short side to
    ``floor(resolution / eval_crop_pct)`` then centre-crop (224 -> 256 -> 224 at 0.875);
    ``none`` -> resize to ``resolution``."""
    pre = _prescale(part)
    if part.crop == "pad":
        return [*pre, v2.CenterCrop(resolution)]
    if part.crop == "none":
        return [*pre, v2.Resize((resolution, resolution), antialias=True)]
    return [*pre, v2.Resize(math.floor(resolution / part.eval_crop_pct), antialias=True),
            v2.CenterCrop(resolution)]


def _prescale(part: DataPart) -> list[v2.Transform]:
    """The data part's ``resize`` (before any crop rule, train and eval alike), if any."""
    return [v2.Resize((part.resize, part.resize), antialias=True)] if part.resize else []


def sample_transforms(part: DataPart, augmentation: Augmentation, *, resolution: int) -> list[v2.Transform]:
    """Per-image uint8 augmentations, in timm's order: crop (the data part's rule), flip, RandAugment."""
    tfs: list[v2.Transform] = []
    if part.crop == "rrc":
        tfs.append(v2.RandomResizedCrop(resolution, scale=(augmentation.crop_scale_min, 1.0), antialias=True))
    elif part.crop == "pad":
        tfs.append(v2.RandomCrop(resolution, padding=resolution // 8))
    if augmentation.hflip:
        tfs.append(v2.RandomHorizontalFlip())
    if augmentation.randaugment_ops:
        tfs.append(v2.RandAugment(num_ops=augmentation.randaugment_ops, magnitude=augmentation.randaugment_magnitude))
    return tfs
