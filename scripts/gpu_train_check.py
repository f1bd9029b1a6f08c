#!/usr/bin/env python3
"""One short GPU check of the training engine's CUDA path (bf16 autocast, channels_last):
trains a few roadmap steps on generated 32 px data under a cifar100_gpu-style recipe
(in-memory, batched pad-crop/flip/RandAugment, erasing, Mixup/CutMix), once with
torch.compile and once without, and prints img/s per step and epoch; then
``bench --parity --device cuda`` (ResNet-50 and ConvNeXt-T against torchvision, ratios).
Usage: ``python scripts/gpu_train_check.py [--device cuda] [--out DIR] [--epochs 1] [--no-parity]``
(about 3-6 minutes on one GPU, most of it compilation)."""

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
description = "GPU path check: cifar100_gpu's optimiser and augmentation, bf16 + channels_last, compile on/off"
lr = 4e-3
lr_batch = 4096
epochs = {epochs}
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
compile = false
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_train_check.py")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None)
    ap.add_argument("--images", type=int, default=20480, help="generated training images (default 20480)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per step (default 1; epoch 1 includes compilation)")
    ap.add_argument("--no-parity", action="store_true", help="skip bench --parity")
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu_check_"))
    recipe = out / "gpu_check.toml"
    out.mkdir(parents=True, exist_ok=True)
    recipe.write_text(RECIPE.replace("{epochs}", str(args.epochs)))
    table = []
    for compiled in (False, True):
        t = time.perf_counter()
        run = train_roadmap(None, data=f"synthetic:{args.images}", recipe=recipe, seeds=[0],
                            out=out / ("compiled" if compiled else "eager"), steps=STEPS, device=args.device,
                            proxy=ProxyScale(width=0.5, depth=0.34, stem_stride=2), compile=compiled or None,
                            progress=False)
        wall = time.perf_counter() - t
        for step in STEPS:
            rows = list(csv.DictReader((run / step / "seed0" / "log.csv").open()))
            table.append((step, "compile" if compiled else "eager", [r["img_per_s"] for r in rows], rows[-1]["top1"]))
        print(f"{'compiled' if compiled else 'eager'} run: {wall:.0f} s", flush=True)
    print("\nstep, mode, img/s per epoch (compile: epoch 1 includes compilation), top1")
    for step, mode, speeds, top1 in table:
        print(f"{step}, {mode}, {' '.join(speeds)}, {top1}")
    if not args.no_parity:
        from modernize.cli import main as cli_main

        return cli_main(["bench", "--parity", "--device", args.device, "--batch", "64", "--repeats", "7",
                         "--out", str(out / "parity")])
    return 0


def cli(argv: list[str] | None = None) -> int:
    """:func:`main` behind the library's error boundary: one line and exit 2, as in ``modernize``."""
    from modernize.boundary import guarded_main

    return guarded_main(main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
