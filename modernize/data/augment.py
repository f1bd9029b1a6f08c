"""Batched augmentation of in-memory data: torchvision's per-image transforms drawn per image
but applied to a whole batch at once, then normalisation, random erasing and Mixup / CutMix."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms import v2

from ..recipe import Augmentation, DataPart
from .presets import sample_transforms


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
    per-image random erasing, then batch-level Mixup / CutMix (soft targets). It reads the
    recipe's augmentation part, and of its data part the crop rule and the resolution (the
    size in-memory images are stored at).

    Every random draw comes from torch's global generator, so a run's augmentation is
    reproduced exactly from the RNG state saved in a checkpoint."""

    def __init__(self, part: DataPart, augmentation: Augmentation, *, num_classes: int, mean: tuple[float, ...],
                 std: tuple[float, ...], per_sample: bool = True) -> None:
        # Pad-crop, flip and RandAugment are drawn per image but applied to the whole batch at
        # once (RandAugment per (op, sign) group): a Python loop over images would cost more than
        # the model on CPU, and stall a GPU. Only RandomResizedCrop still runs image by image.
        aug, resolution = augmentation, part.resolution
        self.batched = per_sample and part.crop != "rrc"
        self.pad = resolution // 8 if part.crop == "pad" else 0
        self.hflip = aug.hflip
        tfs = [t for t in sample_transforms(part, aug, resolution=resolution) if not isinstance(t, v2.RandAugment)] \
            if per_sample and not self.batched else []
        self.per_image = v2.Compose(tfs) if tfs else None
        self.randaug = BatchRandAugment(aug.randaugment_ops, aug.randaugment_magnitude) \
            if per_sample and aug.randaugment_ops else None
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.erase = v2.RandomErasing(p=aug.random_erasing, value=0) if aug.random_erasing > 0 else None
        mixers: list[v2.Transform] = []
        if aug.mixup > 0:
            mixers.append(v2.MixUp(alpha=aug.mixup, num_classes=num_classes))
        if aug.cutmix > 0:
            mixers.append(v2.CutMix(alpha=aug.cutmix, num_classes=num_classes))
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

    def images(self, x: Tensor) -> Tensor:
        """The per-image part on uint8 images, before normalisation: crop, flip, RandAugment
        (what ``bench-data`` times against the per-image loop)."""
        if self.batched:
            x = self._pad_crop_flip(x)
        elif self.per_image is not None:
            x = torch.stack([self.per_image(img) for img in x])
        if self.randaug is not None:
            x = self.randaug(x)
        return x

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x = self.normalize(self.images(x))
        if self.erase is not None:
            x = torch.stack([self.erase(img) for img in x])
        if self.mix is not None:
            x, y = self.mix(x, y)
        return x, y
