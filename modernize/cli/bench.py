"""``run_ablation.py bench``: images/s and peak memory per step, or ``--parity`` with torchvision.

:mod:`modernize.bench` is imported by the handler only, so that building the parser does not
import it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from ..files import check_writable_dir
from ..paths import default_out, runs_dir
from ..roadmap import load_roadmap
from .argtypes import (
    MAX_RESOLUTION,
    Extend,
    add_roadmap_argument,
    int_between,
    positive_int,
    positive_number,
    resolution,
    step_names,
)

DEFAULT_BATCH = {"cpu": 8, "cuda": 128}
"""Small on CPU (the whole roadmap in minutes), large on GPU (launch overhead amortized)."""


def cmd_bench(args: argparse.Namespace) -> int:
    from .. import bench
    from ..device import resolve_device

    # Validate everything before any work or any write.
    device = resolve_device(args.device)
    roadmap = load_roadmap(args.roadmap)
    steps = step_names(args.steps)
    if args.steps is not None and not steps:
        raise ConfigError("--steps: give step names, e.g. --steps resnet50 kernel_7 (or resnet50,kernel_7)")
    roadmap.select(steps)
    batch = args.batch or (32 if args.parity else DEFAULT_BATCH[device.split(':')[0]])
    bench.check_sizes(batch, args.resolution, args.repeats, args.warmup)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    command = _command(args)
    out = Path(args.out) if args.out else (runs_dir() if args.parity else default_out(roadmap.name))
    check_writable_dir(out)  # a bad --out fails now, not after the timing
    start = time.perf_counter()

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)


    if args.parity:
        table = bench.parity(bench.parity_specs(roadmap, steps), device=device, batch=batch,
                             resolution=args.resolution, repeats=args.repeats, warmup=args.warmup,
                             progress=progress)
        wall = time.perf_counter() - start
        print(table.to_string(index=False))
        csv_path, md_path = bench.write_parity(out, table, command, wall)
        print(f"wrote {csv_path}, {md_path} ({wall:.0f} s)")
        return 0

    table = bench.bench_roadmap(roadmap, device=device, batch=batch, resolution=args.resolution,
                                repeats=args.repeats, warmup=args.warmup, steps=steps, progress=progress)
    wall = time.perf_counter() - start
    print(table.to_string(index=False))
    csv_path = bench.write_bench(out, table)
    info = bench.machine_info()
    print(f"wrote {csv_path} ({wall:.0f} s; {info['nproc']} cores, {info['cpu']}, torch {info['torch']}, "
          f"load {info.get('loadavg', '?')})")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (for the report)."""
    parts = ["python", "run_ablation.py", "bench"] + ([args.roadmap] if args.roadmap else [])
    for flag in ("device", "batch", "resolution", "repeats", "warmup", "steps", "threads", "out"):
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag}", ",".join(value) if isinstance(value, list) else str(value)]
    if args.parity:
        parts.append("--parity")
    return " ".join(shlex.quote(p) for p in parts)


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="images/s (inference, training step) and peak memory per step",
                       description="Time every step (warm-up, then the median of --repeats timed "
                                   "iterations) and write DIR/bench.csv. With --parity: our first and "
                                   "last step vs their torchvision twins, interleaved, written to "
                                   "runs/bench_parity.csv and runs/bench.md.")
    add_roadmap_argument(p)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cpu: fp32 NCHW; cuda: bf16 autocast + channels_last (default cpu)")
    p.add_argument("--batch", type=positive_int, default=None,
                   help=f"images per iteration (default {DEFAULT_BATCH['cpu']} on cpu, "
                        f"{DEFAULT_BATCH['cuda']} on cuda, 32 with --parity)")
    p.add_argument("--resolution", type=resolution, default=224, help="input size in px (default 224)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed iterations; the median is kept (default 5)")
    p.add_argument("--warmup", type=positive_int, default=1, help="untimed iterations first (default 1)")
    p.add_argument("--steps", nargs="+", action=Extend, default=None,
                   help="step names, space- or comma-separated (default: all)")
    p.add_argument("--threads", type=int_between(1, 1024, "--threads"), default=None,
                   help="torch CPU threads (default: torch's)")
    p.add_argument("--parity", action="store_true",
                   help="compare the roadmap's first and last step with torchvision instead")
    p.add_argument("--out", default=None,
                   help="output folder (default: runs/<roadmap name>/; runs/ with --parity)")
    p.set_defaults(func=cmd_bench)
    add_bench_data(sub)


def cmd_bench_data(args: argparse.Namespace) -> int:
    import statistics

    from .. import bench_data
    from ..data import DataSpec, loader_workers
    from ..recipe import load_recipe

    recipe = load_recipe(args.recipe)
    if args.resolution:
        recipe = recipe.replace(resolution=args.resolution)
    root = None
    if args.data is not None:
        spec = DataSpec.parse(args.data)
        if spec.kind != "imagefolder":
            raise ConfigError(f"--data {args.data}: bench-data reads an image folder (imagefolder:PATH)")
        root = Path(spec.path or "")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rates, wall = bench_data.folder_rate(root, recipe, generate=args.images, images=args.measure,
                                         repeats=args.repeats, note=lambda line: print(line, flush=True))
    per = statistics.median(rates)
    print(f"decode + '{recipe.name}' augmentation at {recipe.resolution} px, one worker (one thread): "
          f"{per:.1f} img/s per CPU second (median of {args.repeats} x {args.measure} images; "
          f"{min(rates):.1f}-{max(rates):.1f}), {statistics.median(wall):.1f} img/s per wall second")
    for target in args.train_img_s:
        print(f"  a GPU training at {target:g} img/s needs {bench_data.workers_needed(target, per)} workers "
              f"(this machine gives the loader {loader_workers()})")
    sp = bench_data.batch_augment_speedup(load_recipe(args.batch_recipe), batch=args.batch, repeats=args.repeats * 3)
    print(f"in-memory batch augmentation ('{args.batch_recipe}', batch {args.batch}): per-image loop "
          f"{sp['old_img_s']:.0f} img/s, batched {sp['new_img_s']:.0f} img/s, ratio {sp['ratio']:.2f} "
          f"[{sp['ratio_min']:.2f}, {sp['ratio_max']:.2f}] (median of {args.repeats * 3} interleaved pairs)")
    return 0


def add_bench_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-data", help="input pipeline: decode + augmentation img/s per DataLoader worker",
                       description="Time decode + a recipe's per-image augmentation in one process (= one "
                                   "DataLoader worker) over a folder of JPEGs (generated when --data is not "
                                   "given), print how many workers a GPU needs at given training img/s, and "
                                   "time the in-memory batched augmentation against the per-image loop.")
    p.add_argument("--data", default=None, help="imagefolder:PATH to read (default: generate --images JPEGs)")
    p.add_argument("--images", type=int_between(1, 1_000_000, "--images"), default=2000,
                   help="JPEGs to generate (default 2000)")
    p.add_argument("--measure", type=positive_int, default=200, help="images timed per repeat (default 200)")
    p.add_argument("--repeats", type=positive_int, default=3, help="repeats; the median is kept (default 3)")
    p.add_argument("--recipe", default="paper", help="recipe whose augmentation is timed (default paper)")
    p.add_argument("--resolution", type=int_between(1, MAX_RESOLUTION, "--resolution"), default=None,
                   help="override the recipe's resolution")
    p.add_argument("--train-img-s", type=positive_number, nargs="+", action=Extend, default=[1000.0, 3000.0],
                   help="GPU training speeds to size the worker count for (default 1000 3000)")
    p.add_argument("--batch-recipe", default="cifar100_gpu",
                   help="in-memory recipe for the batched-augmentation comparison (default cifar100_gpu)")
    p.add_argument("--batch", type=positive_int, default=256, help="batch for that comparison (default 256)")
    p.add_argument("--threads", type=int_between(1, 1024, "--threads"), default=None,
                   help="torch threads for the batched comparison")
    p.set_defaults(func=cmd_bench_data)
