#!/usr/bin/env python3
"""One short GPU check of the training engine's CUDA path (bf16 autocast, channels_last,
torch.compile): trains a few roadmap steps for 2 epochs on generated 32 px data and prints
img/s per step. Usage: ``python scripts/gpu_train_check.py [--device cuda] [--out DIR]``
(about 2-4 minutes on one GPU, most of it compilation)."""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modernize.proxy import ProxyScale  # noqa: E402
from modernize.train import train_roadmap  # noqa: E402

STEPS = ["recipe", "depthwise", "kernel_7", "separate_downsampling"]
RECIPE = """
description = "GPU path check: cifar100_gpu's optimiser and augmentation, 2 epochs, bf16 + channels_last + compile"
lr = 4e-3
lr_batch = 4096
epochs = 2
batch_size = 256
warmup_epochs = 0.5
crop = "pad"
randaugment_ops = 2
random_erasing = 0.25
mixup = 0.8
cutmix = 1.0
resolution = 32
precision = "bf16"
channels_last = true
compile = true
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None)
    ap.add_argument("--images", type=int, default=20480, help="generated training images (default 20480)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu_check_"))
    recipe = out / "gpu_check.toml"
    out.mkdir(parents=True, exist_ok=True)
    recipe.write_text(RECIPE)
    t = time.perf_counter()
    run = train_roadmap(None, data=f"synthetic:{args.images}", recipe=recipe, seeds=[0], out=out / "run", steps=STEPS,
                        device=args.device, proxy=ProxyScale(width=0.5, depth=0.34, stem_stride=2), progress=False)
    print(f"\nstep, epoch-2 img/s (epoch 1 includes compilation), top1  [{time.perf_counter() - t:.0f} s total]")
    for step in STEPS:
        rows = list(csv.DictReader((run / step / "seed0" / "log.csv").open()))
        print(f"{step}, {rows[-1]['img_per_s']}, {rows[-1]['top1']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
