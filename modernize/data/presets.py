"""Transform presets of a recipe: the deterministic sizing of training and evaluation images
(``pad``, ``none``, ``rrc``) and the per-image random augmentations, in timm's order. Streamed
data apply them per image; in-memory data are sized once (``memory.resize``) and augmented on
the batch (``augment.BatchAugment``)."""

from __future__ import annotations

import math

from torchvision.transforms import v2

from ..recipe import Recipe


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
