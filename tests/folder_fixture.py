"""Export Fashion-MNIST images as an ImageNet-layout folder of grey PNGs (the same images, in
the same fixed subsets, that the in-memory ``fashion-mnist`` path draws for a recipe's
``train_images`` / ``val_images``).

    python -m tests.folder_fixture DIR [--train 10000] [--val 2000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from modernize.data.memory import FASHION_FILES, FASHION_MNIST_DIR, read_idx_pair, subset
from modernize.data.seeds import subset_seed

CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def export_fashion(root: Path, *, train: int, val: int, folder: Path = FASHION_MNIST_DIR) -> Path:
    for split, count in (("train", train), ("val", val)):
        data = subset(read_idx_pair(folder, *FASHION_FILES[split]), count, seed=subset_seed(split))
        for name in CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(data.images, data.labels.tolist())):
            Image.fromarray(img[0].numpy(), mode="L").save(root / split / CLASSES[label] / f"{i:05d}.png")
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--val", type=int, default=2000)
    args = ap.parse_args()
    print(export_fashion(args.root, train=args.train, val=args.val))
