"""Throughput and peak memory of every step, and speed parity with torchvision.

FLOPs alone mislead (a depthwise conv or a LayerNorm costs more time than its MACs say),
so every step is timed the same way:

* inference: ``model.eval()`` under ``torch.inference_mode()``, one forward of a batch;
* training step: ``model.train()`` and the training loop's own update
  (``train.loop.train_step``: forward, ``CrossEntropyLoss`` on random labels, backward,
  ``AdamW.step()``) under ``BENCH_RECIPE``: no augmentation, a constant learning rate;
* ``warmup`` untimed iterations, then ``repeats`` timed ones; the figure is the median
  (images/s = batch / median seconds) and the spread is (max - min) / median;
* CPU: fp32, NCHW. GPU: bf16 autocast and a channels_last model and input (as the paper
  measured), with ``torch.cuda.synchronize()`` before every clock read;
* peak memory, everything the step holds (weights, grads, AdamW state, activations):
  GPU ``torch.cuda.max_memory_allocated``; CPU the peak resident set size, sampled every
  2 ms from ``/proc/self/statm`` by a thread during the warm-up training iterations, minus
  the RSS before the model was built (after ``gc`` and ``malloc_trim``). It is a process
  figure, so it is approximate (allocator caching) but needs no tracing. Memory is
  measured during warm-up so that the sampling thread never disturbs a timed iteration.

:func:`parity` times our models against their torchvision twins in one process with
interleaved repeats (ours, theirs, theirs, ours, ...), so that load from other processes
hits both alike.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from .complexity import count
from .data import BatchAugment
from .device import precision_label, resolve_device
from .errors import ConfigError
from .files import atomic_write_text
from .interop import TWINS, twin_name
from .model import build_model
from .recipe import Augmentation, DataPart, Recipe
from .roadmap import Roadmap, Step
from .spec import ArchSpec
from .train.dist import Dist
from .train.loop import make_trainer, train_step

BENCH_COLUMNS = ["step", "gmacs", "params_m", "batch", "resolution", "device", "dtype", "threads",
                 "warmup", "repeats", "infer_img_s", "infer_spread_pct", "train_img_s",
                 "train_spread_pct", "peak_mem_mb", "mem_method"]
PARITY_COLUMNS = ["model", "mode", "ours_img_s", "theirs_img_s", "ratio", "ratio_min", "ratio_max",
                  "ratio_of_medians", "ours_spread_pct", "theirs_spread_pct", "batch", "resolution", "device", "dtype",
                  "threads", "warmup", "repeats"]

def check_sizes(batch: int, resolution: int, repeats: int, warmup: int) -> None:
    for flag, value, low in (("--batch", batch, 1), ("--resolution", resolution, 32),
                             ("--repeats", repeats, 1), ("--warmup", warmup, 1)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{flag}: must be an integer >= {low}, got {value!r}")


# --- memory ----------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _trim() -> None:
    """Give freed heap back to the OS so that the RSS baseline is not inflated by the last step."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _PeakRSS:
    """Samples the process RSS every ``interval`` s in a thread (torch ops release the GIL)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        rss = _rss_bytes()
        if rss is not None:
            self.peak = rss if self.peak is None else max(self.peak, rss)

    def __enter__(self) -> _PeakRSS:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# --- one model -------------------------------------------------------------------------------

BENCH_RECIPE = Recipe(name="bench", lr=1e-4, schedule="constant", warmup_epochs=0.0, label_smoothing=0.0,
                      crop="none", hflip=False, precision="bf16")
"""The update ``bench`` times: the training loop's own step with AdamW and no augmentation (bf16
autocast on CUDA; CPU runs fp32), so a model's training images/s is the network's cost."""


@dataclass
class Runner:
    """A model with its input, labels and optimizer, ready to time one inference or one
    training step on ``device`` (bf16 autocast + channels_last on CUDA)."""

    model: nn.Module
    device: torch.device
    batch: int
    resolution: int
    in_chans: int = 3
    num_classes: int = 1000

    def __post_init__(self) -> None:
        cuda = self.device.type == "cuda"
        fmt = torch.channels_last if cuda else torch.contiguous_format
        gen = torch.Generator().manual_seed(0)
        self.model = self.model.to(self.device, memory_format=fmt)
        self.x = torch.randn(self.batch, self.in_chans, self.resolution, self.resolution, generator=gen)
        self.x = self.x.to(self.device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, self.num_classes, (self.batch,), generator=gen).to(self.device)
        recipe = dataclasses.replace(BENCH_RECIPE, channels_last=cuda, resolution=self.resolution)
        aug = BatchAugment(recipe.part(DataPart), recipe.part(Augmentation), num_classes=self.num_classes,
                           mean=(0.0,) * self.in_chans, std=(1.0,) * self.in_chans, per_sample=False)
        self.trainer = make_trainer(self.model, recipe, aug, device=str(self.device), d=Dist(), lr=recipe.lr,
                                    ipe=1, accum=1)
        self.dtype = precision_label(str(self.device), recipe.precision)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def infer(self) -> Tensor:
        self.model.eval()
        with torch.inference_mode(), self.trainer.autocast():
            return self.model(self.x)

    def train_step(self) -> Tensor:
        self.model.train()
        return train_step(self.trainer, self.x, self.y)[0]

    def timed(self, fn: Callable[[], Tensor]) -> float:
        """Seconds of one call of ``fn``, synchronized on GPU."""
        self._sync()
        start = time.perf_counter()
        fn()
        self._sync()
        return time.perf_counter() - start


def _spread_pct(times: Sequence[float]) -> float:
    return round(100 * (max(times) - min(times)) / statistics.median(times), 1)


def _img_s(batch: int, times: Sequence[float]) -> float:
    return round(batch / statistics.median(times), 2)


def bench_spec(spec: ArchSpec, *, device: torch.device, batch: int, resolution: int, repeats: int,
               warmup: int) -> dict[str, object]:
    """Inference and training throughput and peak memory of one spec (see module docstring)."""
    cuda = device.type == "cuda"
    _trim()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    base_rss = _rss_bytes()
    torch.manual_seed(0)
    runner = Runner(build_model(spec), device, batch, resolution, spec.in_chans, spec.num_classes)
    for _ in range(warmup):
        runner.infer()
    infer = [runner.timed(runner.infer) for _ in range(repeats)]
    try:
        with _PeakRSS() as rss:
            for _ in range(warmup):
                runner.timed(runner.train_step)
        train = [runner.timed(runner.train_step) for _ in range(repeats)]
    except ValueError as exc:  # BatchNorm in training mode over a single value per channel
        if "more than 1 value per channel" not in str(exc):
            raise
        raise ConfigError(f"--batch {batch} at {resolution} px: a BatchNorm layer sees one value per channel in "
                          "a training step (batch x height x width = 1); use --batch 2 or more, or a larger "
                          "--resolution") from None
    if cuda:
        peak_mb, method = torch.cuda.max_memory_allocated(device) / 2**20, "cuda.max_memory_allocated"
    elif base_rss is not None and rss.peak is not None:
        peak_mb, method = (rss.peak - base_rss) / 2**20, "rss_peak_delta"
    else:
        peak_mb, method = float("nan"), "unavailable"
    dtype = runner.dtype
    del runner
    return {"batch": batch, "resolution": resolution, "device": device.type,
            "dtype": dtype, "threads": torch.get_num_threads(),
            "warmup": warmup, "repeats": repeats,
            "infer_img_s": _img_s(batch, infer), "infer_spread_pct": _spread_pct(infer),
            "train_img_s": _img_s(batch, train), "train_spread_pct": _spread_pct(train),
            "peak_mem_mb": round(peak_mb, 1), "mem_method": method}


def bench_roadmap(roadmap: Roadmap, *, device: str | torch.device = "cpu", batch: int = 8,
                  resolution: int = 224, repeats: int = 5, warmup: int = 1,
                  steps: Sequence[str] | None = None,
                  progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per step: MACs, params, inference / training images per second, peak memory.

    Steps that share an architecture (``resnet50`` and the recipe-only step) are measured
    once and share the row's numbers."""
    dev = device if isinstance(device, torch.device) else torch.device(resolve_device(device))
    check_sizes(batch, resolution, repeats, warmup)
    selected: list[Step] = roadmap.select(list(steps) if steps else None)
    done: dict[ArchSpec, dict[str, object]] = {}
    rows = []
    for step in selected:
        if step.spec not in done:
            c = count(step.spec, resolution)
            start = time.perf_counter()
            done[step.spec] = {"gmacs": round(c.gmacs, 4), "params_m": round(c.params_m, 3),
                               **bench_spec(step.spec, device=dev, batch=batch, resolution=resolution,
                                            repeats=repeats, warmup=warmup)}
            if progress:
                r = done[step.spec]
                progress(f"{step.name}: infer {r['infer_img_s']} img/s, train {r['train_img_s']} img/s "
                         f"({time.perf_counter() - start:.1f} s)")
        rows.append({"step": step.name, **done[step.spec]})
    return pd.DataFrame(rows, columns=BENCH_COLUMNS)


# --- parity with torchvision -----------------------------------------------------------------

def _interleaved(ours: Runner, theirs: Runner, fn_name: str, repeats: int, warmup: int
                 ) -> tuple[list[float], list[float]]:
    """Alternate the order each repeat (ours-theirs, theirs-ours, ...) so drift cancels."""
    for _ in range(warmup):
        getattr(ours, fn_name)()
        getattr(theirs, fn_name)()
    t_ours, t_theirs = [], []
    for r in range(repeats):
        pair = [(ours, t_ours), (theirs, t_theirs)]
        for runner, times in (pair if r % 2 == 0 else pair[::-1]):
            times.append(runner.timed(getattr(runner, fn_name)))
    return t_ours, t_theirs


def parity(specs: Sequence[ArchSpec], *, device: str | torch.device = "cpu", batch: int = 32,
           resolution: int = 224, repeats: int = 5, warmup: int = 1,
           progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Ours vs torchvision, inference and training step, interleaved in one process.

    ``ratio`` is ours / torchvision in images per second (> 1: ours is faster): the median of
    the per-repeat paired ratios, each from two adjacent runs, so that load from other
    processes that drifts over minutes cancels (the ratio of the two medians does not; it is
    kept as ``ratio_of_medians``). ``ratio_min`` / ``ratio_max`` bound the paired ratios."""
    import torchvision.models as tvm

    dev = device if isinstance(device, torch.device) else torch.device(resolve_device(device))
    check_sizes(batch, resolution, repeats, warmup)
    rows = []
    for spec in specs:
        name = twin_name(spec)
        if name is None:
            raise ConfigError("parity: a spec is not one of the torchvision twins "
                              f"({', '.join(TWINS)})")
        torch.manual_seed(0)
        tv_model = getattr(tvm, name)()
        # torchvision's ConvNeXts default to stochastic depth (0.1 for tiny); ours get the same
        # rate so that both train the same network (it costs time in training mode).
        rate = max((m.p for m in tv_model.modules() if isinstance(m, StochasticDepth)), default=0.0)
        ours = Runner(build_model(spec, drop_path=rate), dev, batch, resolution, spec.in_chans,
                      spec.num_classes)
        theirs = Runner(tv_model, dev, batch, resolution, 3, 1000)
        for mode, fn_name in (("infer", "infer"), ("train", "train_step")):
            start = time.perf_counter()
            t_ours, t_theirs = _interleaved(ours, theirs, fn_name, repeats, warmup)
            paired = [b / a for a, b in zip(t_ours, t_theirs)]
            rows.append({
                "model": name, "mode": mode, "ours_img_s": _img_s(batch, t_ours),
                "theirs_img_s": _img_s(batch, t_theirs),
                "ratio": round(statistics.median(paired), 3),
                "ratio_min": round(min(paired), 3), "ratio_max": round(max(paired), 3),
                "ratio_of_medians": round(statistics.median(t_theirs) / statistics.median(t_ours), 3),
                "ours_spread_pct": _spread_pct(t_ours), "theirs_spread_pct": _spread_pct(t_theirs),
                "batch": batch, "resolution": resolution, "device": dev.type, "dtype": ours.dtype,
                "threads": torch.get_num_threads(), "warmup": warmup, "repeats": repeats})
            if progress:
                r = rows[-1]
                progress(f"{name} {mode}: ours {r['ours_img_s']} img/s, torchvision {r['theirs_img_s']} "
                         f"img/s, ratio {r['ratio']} [{r['ratio_min']}, {r['ratio_max']}] "
                         f"({time.perf_counter() - start:.1f} s)")
        del ours, theirs
        _trim()
    return pd.DataFrame(rows, columns=PARITY_COLUMNS)


def machine_info() -> dict[str, str]:
    """What a throughput figure depends on: cores, CPU model, torch and thread count."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"nproc": str(os.cpu_count()), "cpu": cpu, "torch": torch.__version__,
            "torch_threads": str(torch.get_num_threads())}
    try:
        info["loadavg"] = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def parity_markdown(table: object, command: str, info: dict[str, str], wall: float,
                    notes: list[str] | None = None) -> str:
    """``reports/bench.md``: the ratios, the command and the machine they came from."""
    lines = ["# Speed parity with torchvision", "",
             "Ours / torchvision in images per second (> 1: ours is faster): `ratio` is the median of the "
             "per-repeat paired ratios of interleaved repeats (ours, theirs, theirs, ours, ...) in one "
             "process; `ratio_min`/`ratio_max` bound them, `ratio_of_medians` is the ratio of the two medians, "
             "`*_spread_pct` is (max - min) / median of each side's times. "
             "Training step = forward + CrossEntropy + backward + AdamW step.", "",
             table.to_markdown(index=False), "",  # type: ignore[attr-defined]
             f"Command: `{command}` ({wall:.0f} s wall).", "",
             f"Machine: {info['nproc']} cores (`nproc`), CPU `{info['cpu']}`, torch {info['torch']}, "
             f"{info['torch_threads']} torch threads, load average at the end {info.get('loadavg', '?')}"
             + (f", GPU {info['gpu']}" if "gpu" in info else "") + ".", ""]
    return "\n".join(lines + [f"- {n}" for n in notes or []] + ([""] if notes else []))


def parity_specs(roadmap: Roadmap, steps: Sequence[str] | None = None) -> list[ArchSpec]:
    """What ``--parity`` times: the roadmap's first and last step (or ``steps``), each of which
    must have a torchvision twin (a ``ConfigError`` naming the step otherwise)."""
    chosen = roadmap.select(steps) if steps else [roadmap[0], roadmap[-1]]
    for step in chosen:
        if twin_name(step.spec) is None:
            raise ConfigError(f"--parity: step '{step.name}' of roadmap '{roadmap.name}' has no "
                              f"torchvision twin (twins: {', '.join(TWINS)})")
    return [step.spec for step in chosen]


def write_bench(out: Path, table: pd.DataFrame) -> Path:
    """``out/bench.csv``, written whole or not at all."""
    path = out / "bench.csv"
    atomic_write_text(path, table.to_csv(index=False))
    return path


def write_parity(out: Path, table: pd.DataFrame, command: str, wall: float) -> tuple[Path, Path]:
    """``out/bench_parity.csv`` and ``out/bench.md`` (the ratios with the command and the machine)."""
    csv_path, md_path = out / "bench_parity.csv", out / "bench.md"
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(md_path, parity_markdown(table, command, machine_info(), wall))
    return csv_path, md_path
