"""The batched pad-crop + flip equals torchvision's RandomCrop(padding) + RandomHorizontalFlip
applied image by image: every output is one padded crop (maybe mirrored), with its own draw."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as F

from modernize.data import BatchAugment
from modernize.recipe import Augmentation, DataPart, load_recipe


def test_each_image_is_its_own_padded_crop_or_its_mirror() -> None:
    recipe = load_recipe("quick")
    assert recipe.crop == "pad" and recipe.hflip
    aug = BatchAugment(recipe.part(DataPart), recipe.part(Augmentation), num_classes=10, mean=(0.0,), std=(1.0,))
    assert aug.batched and aug.pad == 4
    torch.manual_seed(0)
    x = torch.randint(0, 255, (16, 1, 32, 32), dtype=torch.uint8)
    out = aug._pad_crop_flip(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    draws = set()
    for img, src in zip(out, x):
        padded = F.pad(src, [4, 4, 4, 4])
        hits = [(oy, ox, flip) for oy in range(9) for ox in range(9) for flip in (False, True)
                if torch.equal(img, (F.horizontal_flip if flip else (lambda t: t))(
                    F.crop(padded, oy, ox, 32, 32)))]
        assert hits, "output is not a padded crop of its own input"
        draws.add(hits[0])
    assert len(draws) > 4  # per-image parameters, not one draw for the whole batch
