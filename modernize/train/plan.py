"""The plan of a run, printed before it starts (and alone by ``train --plan``): per job the
effective batch, optimizer steps, images seen, MACs per image and an estimated time, then
the total. The time comes from a few training iterations of each step's model timed on the
run's device, with every random generator saved before and restored after, so printing a
plan changes no result."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..complexity import count
from ..data import BatchAugment, Data
from ..model import build_model
from ..recipe import Augmentation, DataPart, Recipe
from ..roadmap import Step
from ..spec import ArchSpec
from .batches import Batching, batching, iters_per_epoch
from .checkpoint import rng_state, set_rng_state
from .config import RunConfig, train_spec
from .dist import Dist
from .loop import make_trainer, train_step

CPU_TIMING_GMACS = 16.0
"""On a CPU a timed iteration holds the micro-batch, cut to about this many GMACs of forward
pass (4 images of a 224-px ResNet-50; a small proxy model's whole batch, whose time per image
depends on the batch); on a GPU the micro-batch itself."""
HOURS_WARNING_S = 3600.0
"""A CPU run estimated at this many seconds or more gets a one-line warning before it starts."""


@dataclass(frozen=True)
class PlannedStep:
    """One step's jobs (one per seed: they differ only in their random numbers)."""

    step: Step
    recipe: Recipe
    seeds: list[int]
    batch: Batching
    updates: int
    """Optimizer steps of one job."""
    gmacs: float
    """Per image, at the recipe's resolution."""
    secs: float
    """Estimated seconds of one job from scratch (training and evaluation; not data loading)."""

    @property
    def images(self) -> int:
        return self.updates * self.batch.global_batch


@contextlib.contextmanager
def kept_rng() -> Iterator[None]:
    """Every generator (torch, CUDA, NumPy, Python) as it was before the block."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_per_image(spec: ArchSpec, recipe: Recipe, micro: int, device: str, gmacs: float, *,
                   accum: int = 1) -> tuple[float, float]:
    """Seconds per image of a training iteration and of an evaluation forward pass, from timed
    iterations after one warm-up; the generators are left as they were.

    The iteration is the loop's own ``train_step`` (augmentation, autocast, scaler,
    accumulation, clipping, schedule, EMA). On CUDA it runs a whole update (``accum``
    micro-batches of ``micro``); a CPU times one micro-batch of at most ``CPU_TIMING_GMACS``
    worth of images, whose per-image time accumulation only repeats."""
    cuda = device.startswith("cuda")
    n = micro if cuda else max(1, min(micro, int(CPU_TIMING_GMACS / max(gmacs, 1e-9))))
    accum = accum if cuda else 1
    reps = 3 if cuda else 2
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    if cuda:
        torch.cuda.init()  # so that its generators are among those kept
    with kept_rng():
        model = build_model(spec).to(device, memory_format=fmt)
        channels = (0.5,) * spec.in_chans
        aug = BatchAugment(recipe.part(DataPart), recipe.part(Augmentation), num_classes=spec.num_classes,
                           mean=channels, std=channels, per_sample=True)
        t = make_trainer(model, recipe, aug, device=device, d=Dist(), lr=recipe.lr, ipe=reps + 1, accum=accum)
        x = torch.randint(0, 256, (n * accum, spec.in_chans, recipe.resolution, recipe.resolution),
                          dtype=torch.uint8, device=device)
        y = torch.randint(0, spec.num_classes, (n * accum,), device=device)
        val = aug.normalize(x[:n]).contiguous(memory_format=fmt)

        @torch.no_grad()
        def evaluate() -> None:
            with t.autocast():
                model(val)

        out = []
        for mode, fn in ((True, lambda: train_step(t, x, y)), (False, evaluate)):
            model.train(mode)
            fn()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            _sync(device)
            out.append((time.perf_counter() - t0) / reps / (n * accum if mode else n))
    return out[0], out[1]


def plan_steps(cfg: RunConfig, pending: Sequence[tuple[Step, Recipe, list[int]]], datas: dict[Hashable, Data],
               data_of: Any, stop: Any = None) -> list[PlannedStep]:
    """The plan of every step with jobs to train; ``data_of(recipe)`` is the step's data set.
    A ``stop()`` that turns true ends the timing at the next step (Ctrl-C does not wait)."""
    d = cfg.dist
    out = []
    for step, recipe, seeds in pending:
        if stop is not None and stop():
            break
        data: Data = data_of(recipe)
        b = batching(recipe, d.world)
        spec = train_spec(step, cfg, data, recipe)
        ipe = iters_per_epoch(data, b.per_process, d)
        with kept_rng():
            gmacs = count(spec, recipe.resolution).gmacs
        train_s, eval_s = time_per_image(spec, recipe, b.micro, cfg.device, gmacs, accum=b.accum)
        evaluated = math.ceil(len(data.val) / d.world) + recipe.precise_bn_batches * b.micro
        secs = recipe.epochs * (ipe * b.per_process * train_s + evaluated * eval_s)
        out.append(PlannedStep(step, recipe, seeds, b, ipe * recipe.epochs, gmacs, secs))
    return out


def duration(secs: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``, ``4.0 days``."""
    if secs < 90:
        return f"{secs:.0f} s"
    if secs < 5400:
        return f"{secs / 60:.1f} min"
    if secs < 2 * 86400:
        return f"{secs / 3600:.1f} h"
    return f"{secs / 86400:.1f} days"


def plan_lines(cfg: RunConfig, plans: Sequence[PlannedStep], workers: int = 1) -> tuple[list[str], float]:
    """The plan's lines (a header, one per job, the total) and the estimated wall time of the run."""
    if not plans:
        return [], 0.0
    lines = [f"plan ({cfg.device}; times from timed iterations of each step's model, data loading not included):"]
    width = max(len(p.step.name) for p in plans)
    for p in plans:
        b = p.batch
        batch = f"batch {b.micro}" + (f" x accum {b.accum}" if b.accum > 1 else "")
        for seed in p.seeds:
            lines.append(f"  {p.step.name:>{width}} seed {seed}: {b.world} process(es) x {batch} = {b.global_batch}, "
                         f"{p.updates:,} steps, {p.images:,} images, {p.gmacs * 1000:,.1f} MMACs/image, "
                         f"est. {duration(p.secs)} [{p.recipe.name}]")
    jobs = sum(len(p.seeds) for p in plans)
    serial = sum(p.secs * len(p.seeds) for p in plans)
    wall = serial / max(1, min(workers, jobs))
    side = f", {duration(wall)} with {workers} workers side by side" if workers > 1 else ""
    lines.append(f"  total: {jobs} job(s), {sum(p.updates * len(p.seeds) for p in plans):,} optimizer steps, "
                 f"{sum(p.images * len(p.seeds) for p in plans):,} images, est. {duration(serial)} one after "
                 f"another{side}")
    return lines, wall


def hours_warning(cfg: RunConfig, wall: float) -> str | None:
    """One line for a CPU run estimated at an hour or more (no prompt: commands run without a terminal)."""
    if not cfg.device.startswith("cpu") or wall < HOURS_WARNING_S:
        return None
    return (f"warning: this run is estimated at {duration(wall)} on the CPU; a GPU (--device cuda), a proxy "
            f"scale (--proxy) or a shorter recipe (--recipe quick) takes far less")
