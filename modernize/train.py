"""The training engine: every step of a roadmap trained under one fixed recipe, per seed,
into a run directory that can be resumed, extended and read by the report.

Layout of a run directory::

    RUN_DIR/run.json                         resolved run config + config hash (refuses a different config)
    RUN_DIR/<step>/seed<k>/config.json       resolved spec, recipe, data, proxy of that job
    RUN_DIR/<step>/seed<k>/log.csv           epoch,train_loss,val_loss,top1,top5,lr,img_per_s,seconds
    RUN_DIR/<step>/seed<k>/result.json       status, top1/top5 (last epoch), best_top1, gmacs, params_m, ...
    RUN_DIR/<step>/seed<k>/last.pt           checkpoint (model, optimizer, scheduler, scaler, EMA, RNG, position)
    RUN_DIR/<step>/seed<k>/prev.pt           the checkpoint before last.pt (until the job is done)
    RUN_DIR/.replaced/<time>/<step>/seed<k>/ jobs moved aside by --force (nothing is deleted)

A job is reused (skipped or resumed) only when its fingerprint (``fingerprint_parts``: the
step's spec, the proxy, the resolved recipe values, the data spec, the seed, the global batch,
torch major.minor), stored in its config.json and result.json, matches this command's; run.json
is the run-level record, not the authority. Nothing is written to RUN_DIR before the
fingerprints, the data and the batch checks have passed.

Determinism: all randomness of an epoch comes from the global generators, which are
seeded from (seed, epoch, rank) when an epoch starts and saved in every checkpoint; the data
order of an epoch comes from its own generator. A run killed anywhere and resumed from its last
checkpoint (end of an epoch, every ``ckpt_every`` iterations, or on Ctrl-C) therefore ends with
the same weights and metrics as an uninterrupted one (on CPU; in-memory data).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .claims import DEFAULT_TIMEOUT_S, Claim, ClaimInfo, try_claim
from .complexity import count
from .data import BatchAugment, Data, DataSpec, InMemory, check_data, load_data, stream
from .errors import ConfigError, ModernizeError
from .files import atomic_torch_save, atomic_write_json, atomic_write_text, read_json_object
from .model import build_model
from .proxy import ProxyScale, proxy_preset
from .recipe import Recipe, config_hash, load_recipe
from .roadmap import Roadmap, Step, check_step_name, load_roadmap
from .spec import ArchSpec

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "top1", "top5", "lr", "img_per_s", "seconds"]


# --- distributed -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> Dist:
    """Join the process group when launched by ``torchrun`` (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    return Dist(rank, world, local)


def _barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


# --- run configuration ---------------------------------------------------------------------------

@dataclass
class RunConfig:
    roadmap: Roadmap
    recipe: Recipe
    data: DataSpec
    proxy: ProxyScale
    seeds: list[int]
    steps: list[Step]
    device: str
    dist: Dist
    out: Path
    download: bool = False
    ckpt_every: int = 0
    """Also checkpoint every N iterations inside an epoch (0: only at epoch ends and on Ctrl-C)."""
    compile: bool | None = None
    progress: bool = True
    step_recipes: dict[str, Recipe] = field(default_factory=dict)
    claim_timeout: float = DEFAULT_TIMEOUT_S
    """Seconds without a heartbeat after which another process takes a job over."""
    worker: int | None = None
    """Index of this local worker (``run_workers``); None for a plain process."""
    tensorboard: bool = False
    """Also write TensorBoard scalars per job under ``<job dir>/tb`` (optional dependency)."""
    force: bool = False
    """Retrain jobs whose fingerprint differs (the old job folders are moved to RUN_DIR/.replaced/)."""
    notes: list[str] = field(default_factory=list)
    """One-line notices printed before any training (e.g. a step override run as written)."""

    @property
    def global_batch(self) -> int:
        return self.recipe.batch_size * self.dist.world

    def compared(self) -> dict[str, Any]:
        """What must match for two invocations to share a run directory."""
        return {
            "roadmap": self.roadmap.name,
            "recipe": self.recipe.to_dict(),
            "step_recipes": {k: v.to_dict() for k, v in sorted(self.step_recipes.items())},
            "data": str(self.data),
            "proxy": self.proxy.to_dict(),
            "global_batch": self.global_batch,
        }


def resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device '{device}': expected cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    return device


def _write_run_json(cfg: RunConfig) -> None:
    """Create run.json, or check that the existing one describes the same run (under a file
    lock: several processes may start on one run folder at once)."""
    from filelock import FileLock

    with FileLock(str(cfg.out / ".run.json.lock")):
        _write_run_json_locked(cfg)


def _write_run_json_locked(cfg: RunConfig) -> None:
    path = cfg.out / "run.json"
    compared = cfg.compared()
    digest = config_hash(compared)
    seeds, steps = list(cfg.seeds), [s.name for s in cfg.steps]
    if path.is_file():
        try:
            old = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable run config ({exc}); remove it or pick another --out") from None
        if not isinstance(old, dict):
            raise ConfigError(f"{path}: run config must be a JSON object, got {type(old).__name__}; "
                              "remove it or pick another --out")
        if old.get("config_hash") != digest and not cfg.force:
            diff = _differing(old.get("compared", {}), compared)
            raise ConfigError(f"{path}: this run directory holds a different configuration "
                              f"(differs in: {_short(', '.join(diff)) or 'config hash'}); use another --out, "
                              "or --force to retrain what differs")
        if old.get("config_hash") == digest:
            seeds = sorted(set(old.get("seeds", [])) | set(seeds))
            steps = [n for n in cfg.roadmap.names if n in set(old.get("steps", [])) | set(steps)]
    record = {
        "roadmap": {"name": cfg.roadmap.name, "path": str(cfg.roadmap.path)},
        "recipe": {"name": cfg.recipe.name, "values": cfg.recipe.to_dict()},
        "step_recipes": {k: {"name": v.name, "values": v.to_dict()} for k, v in cfg.step_recipes.items()},
        "data": str(cfg.data),
        "proxy": cfg.proxy.to_dict() | {"low_res": cfg.proxy.stem_stride is not None,
                                        "note": "width/depth multipliers on every step's spec; stem total "
                                                "stride set to proxy.stem_stride for both stem kinds"},
        "seeds": seeds, "steps": steps, "device": cfg.device, "world_size": cfg.dist.world,
        "per_process_batch": cfg.recipe.batch_size, "global_batch": cfg.global_batch,
        "lr": cfg.recipe.scaled_lr(cfg.global_batch),
        "torch": torch.__version__, "compared": compared, "config_hash": digest,
    }
    atomic_write_json(path, record)


def _differing(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differing(a, b, f"{prefix}{k}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            out.append(f"{prefix}{k} ({_short(repr(a), 40)} -> {_short(repr(b), 40)})")
    return out


def _short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


# --- job fingerprints ----------------------------------------------------------------------------

_NOT_IN_FINGERPRINT = ("name", "description", "substitute")
"""Recipe fields that do not change a job's result (a substitute table is already applied)."""


def fingerprint_parts(cfg: RunConfig, step: Step, recipe: Recipe, seed: int) -> dict[str, Any]:
    """Everything that determines a job's result: the step's paper spec (the proxy is applied
    to it), the resolved recipe values, the data spec, the seed, the global batch and the torch
    version (major.minor). Not included: the device and the number of threads (same numbers up
    to floating-point order), the contents of a data folder (only its spec string)."""
    values = {k: v for k, v in recipe.to_dict().items() if k not in _NOT_IN_FINGERPRINT}
    return json.loads(json.dumps({
        "step_spec": step.spec.to_dict(), "proxy": cfg.proxy.to_dict(), "recipe": values, "data": str(cfg.data),
        "seed": seed, "global_batch": recipe.batch_size * cfg.dist.world,
        "torch": ".".join(torch.__version__.split("+")[0].split(".")[:2])}, sort_keys=True, default=str))


def _legacy_parts(old: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint parts of a job trained before fingerprints, from its config.json."""
    recipe = old.get("recipe") if isinstance(old.get("recipe"), dict) else {}
    return json.loads(json.dumps({
        "step_spec": old.get("paper_spec"), "proxy": old.get("proxy"),
        "recipe": {k: v for k, v in recipe.items() if k not in _NOT_IN_FINGERPRINT},
        "data": old.get("data"), "seed": old.get("seed"), "global_batch": old.get("global_batch")},
        sort_keys=True, default=str))


def job_mismatch(job_dir: Path, parts: dict[str, Any]) -> str | None:
    """None when the job folder is empty or was trained with these fingerprint parts; else what
    differs (one line)."""
    if not any((job_dir / f).exists() for f in ("config.json", "result.json", "last.pt", "prev.pt")):
        return None
    try:
        old = read_json_object(job_dir / "config.json", "job config")
    except FileNotFoundError:
        return "config.json is missing (cannot tell how it was trained)"
    except ConfigError as exc:
        return f"config.json is unreadable ({_short(str(exc).split(': ', 1)[-1], 120)})"
    if old.get("fingerprint") == config_hash(parts):
        return None
    if isinstance(old.get("fingerprint_parts"), dict):
        diff = _differing(old["fingerprint_parts"], parts)
    else:  # trained before fingerprints: compare what its config.json recorded
        diff = _differing(_legacy_parts(old), {k: v for k, v in parts.items() if k != "torch"})
        if not diff:
            return None
    return _short(", ".join(diff), 240) or "fingerprint"


def _job_dir(cfg: RunConfig, step: Step, seed: int) -> Path:
    """``RUN_DIR/<step>/seed<k>``, refused unless it stays inside RUN_DIR."""
    why = check_step_name(step.name)
    if why:
        raise ConfigError(f"roadmap '{cfg.roadmap.name}': {why}")
    job_dir = cfg.out / step.name / f"seed{seed}"
    if not job_dir.resolve().is_relative_to(cfg.out.resolve()):
        raise ConfigError(f"step '{step.name}': its folder {job_dir} would be outside the run directory {cfg.out}")
    return job_dir


# --- one training job -----------------------------------------------------------------------------

class _StopRequested(Exception):
    """Ctrl-C: a checkpoint was saved at an iteration boundary; stop the whole run."""


class _Interrupt:
    """SIGINT/SIGTERM set a flag; the loop checks it between iterations, so the checkpoint
    written on the way out is always consistent."""

    def __init__(self) -> None:
        self.flag = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Interrupt":
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.flag:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.flag = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool) -> list[dict[str, Any]]:
    """Weight decay on weights only: parameters with ndim <= 1 (norm scales/shifts, biases,
    layer-scale gammas) go to a group without it, as in the ConvNeXt / DeiT recipes."""
    if decay_all:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe.weight_decay, recipe.decay_norm_and_bias)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=recipe.betas)
    return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=recipe.nesterov)


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, iters_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per iteration: linear warm-up, then cosine to ``min_lr`` (or step decay
    at ``decay_epochs``, or constant)."""
    from torch.optim import lr_scheduler as S

    total = recipe.epochs * iters_per_epoch
    warm = min(int(round(recipe.warmup_epochs * iters_per_epoch)), total)
    rest = max(1, total - warm)
    if recipe.schedule == "cosine":
        main: S.LRScheduler = S.CosineAnnealingLR(opt, T_max=rest, eta_min=recipe.min_lr)
    elif recipe.schedule == "step":
        milestones = [int(round(e * iters_per_epoch)) - warm for e in recipe.decay_epochs]
        main = S.MultiStepLR(opt, milestones=[m for m in milestones if m > 0], gamma=recipe.decay_factor)
    else:
        main = S.ConstantLR(opt, factor=1.0, total_iters=0)
    if warm == 0:
        return main
    warmup = S.LinearLR(opt, start_factor=recipe.warmup_start_factor, end_factor=1.0, total_iters=warm)
    return S.SequentialLR(opt, [warmup, main], milestones=[warm])


@dataclass
class Job:
    step: Step
    seed: int
    recipe: Recipe
    spec: ArchSpec
    dir: Path


def _train_spec(step: Step, cfg: RunConfig, data: Data, recipe: Recipe) -> ArchSpec:
    spec = cfg.proxy.apply(step.spec)
    return spec.replace(num_classes=data.num_classes, in_chans=data.in_chans, drop_path=recipe.drop_path)


def _read_result(path: Path) -> dict[str, Any] | None:
    """A job's result.json, or None when missing or unreadable (then the job is not finished)."""
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _batches_in_memory(split: InMemory, *, batch: int, d: Dist, epoch_seed: int, skip: int,
                       device: str) -> Iterator[tuple[Tensor, Tensor]]:
    """The epoch's global batches (fixed order from ``epoch_seed``), this rank's share of each."""
    n = len(split)
    gb = batch * d.world
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed))
    for i in range(skip, n // gb):
        idx = perm[i * gb + d.rank * batch: i * gb + (d.rank + 1) * batch]
        yield split.images[idx].to(device, non_blocking=True), split.labels[idx].to(device, non_blocking=True)


class _OffsetSampler(torch.utils.data.Sampler[int]):
    """This rank's indices of an epoch's fixed permutation, from global batch ``skip`` on."""

    def __init__(self, n: int, *, batch: int, d: Dist, epoch_seed: int, skip: int) -> None:
        self.n, self.batch, self.d, self.seed, self.skip = n, batch, d, epoch_seed, skip

    def _indices(self) -> list[int]:
        gb = self.batch * self.d.world
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed))
        out: list[int] = []
        for i in range(self.skip, self.n // gb):
            out += perm[i * gb + self.d.rank * self.batch: i * gb + (self.d.rank + 1) * self.batch].tolist()
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return max(0, self.n // (self.batch * self.d.world) - self.skip) * self.batch


def _loader_batches(ds: torch.utils.data.Dataset, *, batch: int, d: Dist, epoch_seed: int, skip: int,
                    device: str) -> Iterator[tuple[Tensor, Tensor]]:
    """Through :func:`data.stream`: persistent workers on every core; each sample's augmentation
    is seeded from (epoch_seed, index), so it does not depend on the worker count."""
    sampler = _OffsetSampler(len(ds), batch=batch, d=d, epoch_seed=epoch_seed, skip=skip)  # type: ignore[arg-type]
    yield from stream(ds, sampler, batch=batch, device=device, seeded=True, drop_last=True)


def _iters_per_epoch(data: Data, batch: int, d: Dist) -> int:
    return len(data.train) // (batch * d.world)  # type: ignore[arg-type]


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, aug: BatchAugment, *, batch: int, d: Dist, device: str,
             autocast: Any, channels_last: bool = False,
             stop: Any = None) -> tuple[float, float, float]:
    """(val_loss, top1 %, top5 %) over this rank's share of the validation set, summed over ranks."""
    model.eval()
    val = data.val
    n = len(val)  # type: ignore[arg-type]
    idx = torch.arange(d.rank, n, d.world)
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    if isinstance(val, InMemory):
        chunks: Iterator[tuple[Tensor, Tensor]] = (
            (val.images[idx[i:i + batch]].to(device), val.labels[idx[i:i + batch]].to(device))
            for i in range(0, len(idx), batch))
    else:
        chunks = stream(val, idx.tolist(), batch=batch, device=device, seeded=False)
    k = min(5, data.num_classes)
    for x, y in chunks:
        if stop is not None and stop():
            raise _StopInEval
        x = aug.normalize(x)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(x).float()
        sums[0] += nn.functional.cross_entropy(logits, y, reduction="sum")
        top = logits.topk(k, dim=1).indices
        sums[1] += (top[:, 0] == y).sum()
        sums[2] += (top == y[:, None]).any(dim=1).sum()
        sums[3] += len(y)
    if d.active:
        dist.all_reduce(sums)
    total = max(1.0, sums[3].item())
    return sums[0].item() / total, 100 * sums[1].item() / total, 100 * sums[2].item() / total


@torch.no_grad()
def _precise_bn(model: nn.Module, data: Data, aug: BatchAugment, *, n: int, batch: int, d: Dist, device: str,
                channels_last: bool, stop: Any = None) -> None:
    """Exact BatchNorm statistics of the current weights over the first ``n`` batches of a
    fixed order of un-augmented training images, preprocessed as for evaluation (in memory:
    the stored images; streamed: ``data.train_eval``); no-op for models without BatchNorm."""
    from torch.optim.swa_utils import update_bn

    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    seed = -1 % 2**31
    if isinstance(data.train, InMemory):
        source: Iterator[tuple[Tensor, Tensor]] = _batches_in_memory(data.train, batch=batch, d=d, epoch_seed=seed,
                                                                     skip=0, device=device)
    elif data.train_eval is not None:
        order = _OffsetSampler(len(data.train_eval), batch=batch, d=d, epoch_seed=seed, skip=0)  # type: ignore[arg-type]
        source = stream(data.train_eval, order._indices()[:n * batch], batch=batch, device=device, seeded=False,
                        drop_last=True)
    else:
        return
    batches = []
    for x, _ in source:
        if stop is not None and stop():
            raise _StopInEval
        x = aug.normalize(x)
        batches.append(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        if len(batches) >= n:
            break
    update_bn(batches, model)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on a terminal; nothing per iteration otherwise (a line per epoch is printed)."""
    if not enabled or not sys.stdout.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, unit="it")


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _tensorboard(folder: Path, row: dict[str, Any], *, step: int) -> None:
    """One epoch's log row as TensorBoard scalars (x axis: iterations), beside log.csv."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder)) as w:
        for key in ("train_loss", "val_loss", "top1", "top5", "lr", "img_per_s"):
            w.add_scalar(f"{'val' if key in ('val_loss', 'top1', 'top5') else 'train'}/{key}", row[key], step)


def _fmt(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def _check_batch(step: Step, recipe: Recipe, data: Data, d: Dist) -> None:
    gb = recipe.batch_size * d.world
    if _iters_per_epoch(data, recipe.batch_size, d) < 1:
        raise ConfigError(f"step '{step.name}': {len(data.train)} training images are fewer than "  # type: ignore[arg-type]
                          f"one global batch of {gb} (recipe '{recipe.name}' batch_size)")


def _load_checkpoint(ckpt_path: Path, prev_path: Path, device: str, say: bool) -> dict[str, Any] | None:
    """The newest readable checkpoint (``last.pt``, else ``prev.pt``); an unreadable one is moved
    aside to ``<name>.corrupt-<time>`` with one warning line."""
    for path in (ckpt_path, prev_path):
        if not path.is_file():
            continue
        try:
            ck = torch.load(path, map_location=device, weights_only=False)
            if not isinstance(ck, dict) or not {"model", "optimizer", "scheduler", "epoch", "iter", "rng"} <= set(ck):
                raise ValueError("not a training checkpoint")
            return ck
        except Exception as exc:  # empty, random bytes, truncated zip, wrong content
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, aside)
            if say:
                then = "trying prev.pt" if path == ckpt_path and prev_path.is_file() else "restarting the job"
                print(f"warning: {path}: unreadable checkpoint ({type(exc).__name__}: {_short(str(exc), 80)}); "
                      f"moved to {aside.name}, {then}", file=sys.stderr, flush=True)
    return None


class _StopInEval(Exception):
    """A stop request during precise BN or evaluation."""


def run_job(job: Job, cfg: RunConfig, data: Data, stop: "_Interrupt | None" = None) -> dict[str, Any]:
    """Train one step with one seed (or resume it); returns its result record."""
    with (contextlib.nullcontext(stop) if stop is not None else _Interrupt()) as stop_:
        return _run_job(job, cfg, data, stop_)


def _run_job(job: Job, cfg: RunConfig, data: Data, stop: "_Interrupt") -> dict[str, Any]:
    d, device, recipe = cfg.dist, cfg.device, job.recipe
    result_path, ckpt_path, prev_path = job.dir / "result.json", job.dir / "last.pt", job.dir / "prev.pt"
    cuda = device.startswith("cuda")
    res = recipe.resolution
    cx = count(job.spec, res)
    parts = fingerprint_parts(cfg, job.step, recipe, job.seed)
    base = {"step": job.step.name, "seed": job.seed, "recipe": recipe.name, "resolution": res,
            "gmacs": round(cx.gmacs, 6), "params_m": round(cx.params_m, 6), "epochs": recipe.epochs,
            "fingerprint": config_hash(parts)}
    if d.main:
        atomic_write_json(job.dir / "config.json", {
            "step": job.step.name, "seed": job.seed, "change": job.step.change, "paper_row": job.step.paper_row,
            "adopted": job.step.adopted, "parent": job.step.parent, "spec": job.spec.to_dict(),
            "paper_spec": job.step.spec.to_dict(), "recipe": recipe.to_dict(), "data": str(cfg.data),
            "proxy": cfg.proxy.to_dict(), "device": device, "world_size": d.world,
            "per_process_batch": recipe.batch_size, "global_batch": recipe.batch_size * d.world,
            "lr": recipe.scaled_lr(recipe.batch_size * d.world), "resolution": res,
            "fingerprint": config_hash(parts), "fingerprint_parts": parts, "torch": torch.__version__})

    _seed_everything(job.seed)
    model = build_model(job.spec).to(device)
    if recipe.channels_last:  # also on CPU: oneDNN's NHWC kernels are faster here, depthwise above all
        model = model.to(memory_format=torch.channels_last)
    gb = recipe.batch_size * d.world
    lr = recipe.scaled_lr(gb)
    _check_batch(job.step, recipe, data, d)
    ipe = _iters_per_epoch(data, recipe.batch_size, d)
    opt = make_optimizer(model, recipe, lr)
    sched = make_scheduler(opt, recipe, ipe)
    fp16 = cuda and recipe.precision == "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True) \
        if recipe.ema else None
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.precision)

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=amp_dtype) if (cuda and amp_dtype) else contextlib.nullcontext()

    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    aug = BatchAugment(recipe, num_classes=data.num_classes, mean=data.mean, std=data.std, resolution=res,
                       per_sample=data.in_memory)

    start_epoch, skip, best, rows, partial = 0, 0, -1.0, [], {"loss": 0.0, "n": 0, "seen": 0, "secs": 0.0}
    wall_before = 0.0
    ck = _load_checkpoint(ckpt_path, prev_path, device, d.main)
    if ck is not None:
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            scaler.load_state_dict(ck["scaler"])
            if ema is not None and ck.get("ema") is not None:
                ema.load_state_dict(ck["ema"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ConfigError(f"{job.dir}: its checkpoint does not fit this step's model "
                              f"({type(exc).__name__}: {_short(str(exc), 120)}); rerun with --force to retrain it") from None
        start_epoch, skip, best, rows = ck["epoch"], ck["iter"], ck["best_top1"], ck["log"]
        partial, wall_before = ck["partial"], ck["wall_s"]
        _set_rng_state(ck["rng"][d.rank] if d.rank < len(ck["rng"]) else ck["rng"][0])
        if d.main:
            print(f"  resuming {job.step.name}/seed{job.seed} at epoch {start_epoch + 1}, iteration {skip}", flush=True)

    train_model: nn.Module = model
    if d.active:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[d.local_rank] if cuda else None)
    if (cfg.compile if cfg.compile is not None else recipe.compile) and cuda:
        train_model = torch.compile(train_model)  # type: ignore[assignment]

    t_job = time.perf_counter()

    def save(epoch: int, it: int, part: dict[str, Any]) -> None:
        rng = [_rng_state()]
        if d.active:
            gathered: list[Any] = [None] * d.world
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        if d.main:
            atomic_torch_save(ckpt_path, keep_previous=prev_path, obj={
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "rng": rng, "epoch": epoch, "iter": it, "best_top1": best, "log": rows, "partial": part,
                "wall_s": wall_before + time.perf_counter() - t_job, "spec": job.spec.to_dict(),
                "recipe": recipe.to_dict()})

    def record(status: str, **extra: Any) -> dict[str, Any]:
        last = rows[-1] if rows else {}
        rec = base | {"status": status, "top1": last.get("top1"), "top5": last.get("top5"),
                      "best_top1": best if best >= 0 else None, "epochs_done": len(rows),
                      "wall_s": round(wall_before + time.perf_counter() - t_job, 3),
                      "failed_epoch": None, "reason": None} | extra
        if d.main:
            atomic_write_json(result_path, rec)
        return rec

    def finished(status: str, **extra: Any) -> dict[str, Any]:
        rec = record(status, **extra)
        if d.main:
            with contextlib.suppress(OSError):
                prev_path.unlink(missing_ok=True)
        return rec

    if start_epoch >= recipe.epochs:
        return finished("done")
    record("running")
    for epoch in range(start_epoch, recipe.epochs):
        train_model.train()
        if skip == 0:
            _seed_everything(job.seed * 1_000_003 + epoch * 1_009 + d.rank)
            partial = {"loss": 0.0, "n": 0, "seen": 0, "secs": 0.0}
        epoch_seed = job.seed * 100_003 + epoch
        batches = (_batches_in_memory(data.train, batch=recipe.batch_size, d=d, epoch_seed=epoch_seed,  # type: ignore[arg-type]
                                      skip=skip, device=device) if data.in_memory else
                   _loader_batches(data.train, batch=recipe.batch_size, d=d, epoch_seed=epoch_seed,  # type: ignore[arg-type]
                                   skip=skip, device=device))
        bar = _progress(ipe, f"{job.step.name} s{job.seed} ep{epoch + 1}/{recipe.epochs}", cfg.progress and d.main)
        if bar is not None:
            bar.update(skip)
        t0 = time.perf_counter()
        it = skip
        for x, y in batches:
            x, y = aug(x, y)
            if recipe.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                loss = criterion(train_model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if recipe.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            it += 1
            stats = torch.tensor([loss.detach().float().item(), float(stop.flag)], dtype=torch.float64)
            if d.active:
                stats = stats.to(device)
                dist.all_reduce(stats)
                stats = stats.cpu()
                stats[0] /= d.world
            if not math.isfinite(stats[0].item()):
                if bar is not None:
                    bar.close()
                with contextlib.suppress(OSError):
                    ckpt_path.unlink()
                return finished("failed", failed_epoch=epoch + 1,
                              reason=f"non-finite training loss ({stats[0].item()}) at epoch {epoch + 1}, "
                                     f"iteration {it}")
            partial["loss"] += stats[0].item()
            partial["n"] += 1
            partial["seen"] += len(y) * d.world
            if bar is not None:
                secs = partial["secs"] + time.perf_counter() - t0
                bar.set_postfix(loss=f"{partial['loss'] / partial['n']:.3f}",
                                img_s=f"{partial['seen'] / max(secs, 1e-9):.0f}", refresh=False)
                bar.update(1)
            if stats[1].item() > 0 or (cfg.ckpt_every and it % cfg.ckpt_every == 0 and it < ipe):
                part = partial | {"secs": partial["secs"] + time.perf_counter() - t0}
                save(epoch, it, part)
                if stats[1].item() > 0:
                    if bar is not None:
                        bar.close()
                    record("running")
                    raise _StopRequested(f"{job.step.name}/seed{job.seed}: stopped at epoch {epoch + 1}, "
                                         f"iteration {it}; checkpoint saved, rerun the same command to resume")
        if bar is not None:
            bar.close()
        secs = partial["secs"] + time.perf_counter() - t0
        skip = 0
        eval_model = ema.module if ema is not None else model
        try:
            if recipe.precise_bn_batches:
                _precise_bn(eval_model, data, aug, n=recipe.precise_bn_batches, batch=recipe.batch_size,  # type: ignore[arg-type]
                            d=d, device=device, channels_last=recipe.channels_last, stop=lambda: stop.flag)
            val_loss, top1, top5 = evaluate(eval_model, data, aug,
                                            batch=max(256, recipe.batch_size), d=d, device=device,
                                            autocast=autocast, channels_last=recipe.channels_last,
                                            stop=lambda: stop.flag)
        except _StopInEval:  # the epoch's training is done: resume re-runs only BN + evaluation
            save(epoch, ipe, partial | {"secs": secs})
            record("running")
            raise _StopRequested(f"{job.step.name}/seed{job.seed}: stopped in the evaluation of epoch "
                                 f"{epoch + 1}; checkpoint saved, rerun the same command to resume") from None
        best = max(best, top1)
        rows.append({"epoch": epoch + 1, "train_loss": _fmt(partial["loss"] / max(1, partial["n"])),
                     "val_loss": _fmt(val_loss), "top1": _fmt(top1), "top5": _fmt(top5),
                     "lr": _fmt(opt.param_groups[0]["lr"]), "img_per_s": round(partial["seen"] / max(secs, 1e-9), 1),
                     "seconds": round(secs, 3)})
        save(epoch + 1, 0, {"loss": 0.0, "n": 0, "seen": 0, "secs": 0.0})
        if d.main:
            _write_log(job.dir / "log.csv", rows)
            if cfg.tensorboard:
                _tensorboard(job.dir / "tb", rows[-1], step=(epoch + 1) * ipe)
            if cfg.progress:
                r = rows[-1]
                eta = (recipe.epochs - epoch - 1) * secs
                print(f"  {job.step.name} seed{job.seed} epoch {epoch + 1}/{recipe.epochs}: loss {r['train_loss']:.4f} "
                      f"val {r['val_loss']:.4f} top1 {top1:.2f} top5 {top5:.2f} lr {r['lr']:.2e} "
                      f"{r['img_per_s']:.0f} img/s {secs:.1f}s eta {eta:.0f}s", flush=True)
        record("running")
    return finished("done")


# --- the whole roadmap ---------------------------------------------------------------------------

def prepare_run(roadmap: Roadmap | str | Path | None, *, data: str, recipe: Recipe | str | Path | None, seeds: Sequence[int],
                out: Path, steps: Sequence[str] | None = None, device: str | None = "auto",
                proxy: ProxyScale | None = None, download: bool = False, ckpt_every: int = 0,
                compile: bool | None = None, progress: bool = True,
                claim_timeout: float = DEFAULT_TIMEOUT_S, tensorboard: bool = False,
                force: bool = False) -> RunConfig:
    """Resolve and validate everything (roadmap, steps, recipes, data path, device) before any
    training or writing starts."""
    rm = roadmap if isinstance(roadmap, Roadmap) else load_roadmap(roadmap)
    chosen = rm.select(list(steps) if steps else None)
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe if recipe is not None else (rm.recipe or "paper"))
    step_recipes = {s.recipe: rec.for_step(s.recipe) for s in chosen if s.recipe and s.recipe != rec.name}
    for s in rm:  # every override of the roadmap, so that --steps subsets share one run config
        if s.recipe and s.recipe != rec.name and s.recipe not in step_recipes:
            step_recipes[s.recipe] = rec.for_step(s.recipe)
    if tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install 'modernize[tensorboard]'") from None
    if not (math.isfinite(claim_timeout) and claim_timeout > 0):
        raise ConfigError(f"--claim-timeout: must be a positive number of seconds, got {claim_timeout}")
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds: seeds must be >= 0, got {list(seeds)}")
    spec = DataSpec.parse(data)
    check_data(spec, download=download)
    dev = resolve_device(device)
    d = init_distributed(dev)
    if dev == "cuda" and d.active:
        dev = f"cuda:{d.local_rank}"
    proxy = proxy or (proxy_preset(rec.proxy) if rec.proxy else ProxyScale())  # flags, else the recipe's
    for s in chosen:  # a proxy that breaks a spec is a config error now, not mid-run
        proxy.apply(s.spec)
    return RunConfig(roadmap=rm, recipe=rec, data=spec, proxy=proxy, seeds=list(dict.fromkeys(seeds)), steps=chosen,
                     device=dev, dist=d, out=Path(out), download=download, ckpt_every=ckpt_every, compile=compile,
                     progress=progress, step_recipes=step_recipes, claim_timeout=claim_timeout, force=force,
                     tensorboard=tensorboard,
                     notes=override_notes(rec, chosen))


def override_notes(recipe: Recipe, steps: Sequence[Step]) -> list[str]:
    """One line per step whose recipe override runs as written: the run's recipe has no
    ``[substitute.NAME]`` table for it (e.g. 90 epochs at 224 px under a 1-epoch recipe)."""
    notes = []
    for s in steps:
        if s.recipe and s.recipe != recipe.name and s.recipe not in recipe.substitute:
            r = recipe.for_step(s.recipe)
            notes.append(f"note: step {s.name} trains with recipe '{s.recipe}' as written ({r.epochs} epochs, "
                         f"{r.resolution} px, batch {r.batch_size}): the run's recipe '{recipe.name}' has no "
                         f"[substitute.{s.recipe}] table")
    return notes


def _claim(job_dir: Path, d: Dist, timeout: float) -> Claim | ClaimInfo | contextlib.nullcontext[None]:
    """Rank 0 claims the job for the whole process group; the other ranks follow its answer."""
    got: Claim | ClaimInfo | None = try_claim(job_dir, timeout=timeout) if d.main else None
    if d.active:
        flag = [isinstance(got, Claim)]
        dist.broadcast_object_list(flag, src=0)
        if not d.main:
            return contextlib.nullcontext() if flag[0] else ClaimInfo("?", -1, 0.0, "", 0.0)
    assert got is not None
    return got


def _say(cfg: RunConfig, text: str, **kw: Any) -> None:
    if cfg.dist.main:
        print(f"[w{cfg.worker}] {text}" if cfg.worker is not None else text, flush=True, **kw)


def run(cfg: RunConfig, *, wait: bool = True, poll_s: float = 2.0) -> Path:
    """Train every selected step and seed of a prepared run; returns the run directory.

    Jobs are claimed one at a time (``claims.py``), so any number of processes can share
    ``cfg.out``: a job running elsewhere is left to its owner; a finished or failed job is never
    retrained. With ``wait`` the process then waits for the jobs running elsewhere and takes
    over any whose owner dies."""
    with _Interrupt() as stop:
        datas = _preflight(cfg, stop)
        return _run(cfg, datas, stop, wait=wait, poll_s=poll_s)


def _data_key(cfg: RunConfig, recipe: Recipe) -> str:
    key = (f"{recipe.resolution}/{recipe.train_images}/{recipe.val_images}/{recipe.crop}/"
           f"{recipe.eval_crop_pct}/{recipe.bad_images}/{recipe.resize}")
    if cfg.data.kind == "imagefolder":  # the per-image augmentation lives in the data set's transform
        key += (f"/{recipe.crop_scale_min}/{recipe.hflip}/{recipe.randaugment_ops}/"
                f"{recipe.randaugment_magnitude}")
    return key


def _check_stop(stop: "_Interrupt", where: str) -> None:
    if stop.flag:
        print(f"interrupted {where}; rerun the same command to resume", file=sys.stderr, flush=True)
        raise KeyboardInterrupt


def _preflight(cfg: RunConfig, stop: "_Interrupt", load: bool = True) -> dict[str, Data]:
    """Everything that can refuse a run, before anything is written to RUN_DIR: job folders
    inside RUN_DIR, job fingerprints (a job trained differently is refused unless ``force``),
    the data of every job still to train and its batch check. Then run.json, and with
    ``force`` the differing jobs are moved to ``RUN_DIR/.replaced/<time>/``."""
    d = cfg.dist
    if cfg.worker is None:
        for note in cfg.notes:
            _say(cfg, note)
    stale: list[tuple[Path, str]] = []
    pending: list[tuple[Step, Recipe]] = []
    for step in cfg.steps:
        recipe = cfg.step_recipes.get(step.recipe or "", cfg.recipe)
        todo = False
        for seed in cfg.seeds:
            job_dir = _job_dir(cfg, step, seed)
            why = job_mismatch(job_dir, fingerprint_parts(cfg, step, recipe, seed))
            if why:
                stale.append((job_dir, why))
                todo = True
            elif (_read_result(job_dir / "result.json") or {}).get("status") not in ("done", "failed"):
                todo = True
        if todo:
            pending.append((step, recipe))
    if stale and not cfg.force:
        job, why = stale[0]
        more = f" (and {len(stale) - 1} more job(s))" if len(stale) > 1 else ""
        raise ConfigError(f"{job}: trained with a different configuration{more}; differs in: {why}; "
                          "rerun with --force to retrain (the old job folder is moved to RUN_DIR/.replaced/), "
                          "or use another --out")
    datas: dict[str, Data] = {}
    if load:
        for step, recipe in pending:
            key = _data_key(cfg, recipe)
            if key not in datas:
                datas[key] = load_data(cfg.data, recipe=recipe, download=cfg.download and d.main)
                _check_stop(stop, "while loading data")
            _check_batch(step, recipe, datas[key], d)
    if d.main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        _write_run_json(cfg)
        if stale:
            aside = cfg.out / ".replaced" / time.strftime("%Y%m%d-%H%M%S")
            for job_dir, why in stale:
                target = aside / job_dir.relative_to(cfg.out)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(job_dir, target)
                _say(cfg, f"--force: {job_dir} differed ({why}); moved to {target}")
    _barrier(d)
    return datas


def _run(cfg: RunConfig, datas: dict[str, Data], stop: "_Interrupt", *, wait: bool, poll_s: float) -> Path:
    d = cfg.dist
    _say(cfg, f"run {cfg.out}: roadmap {cfg.roadmap.name}, recipe {cfg.recipe.name}, data {cfg.data}, "
              f"device {cfg.device}, {d.world} process(es) x batch {cfg.recipe.batch_size} = global batch "
              f"{cfg.global_batch}, lr {cfg.recipe.scaled_lr(cfg.global_batch):.3g}, proxy {cfg.proxy.to_dict()}, "
              f"{len(cfg.steps)} step(s) x {len(cfg.seeds)} seed(s), {torch.get_num_threads()} thread(s)")
    t_run = time.perf_counter()
    first_pass, waiting_said = True, False
    while True:
        elsewhere: dict[Path, str] = {}  # job dir -> "step/seedK (owner)"
        for step in cfg.steps:
            recipe = cfg.step_recipes.get(step.recipe or "", cfg.recipe)
            key = _data_key(cfg, recipe)
            for seed in cfg.seeds:
                job_dir = _job_dir(cfg, step, seed)
                _check_stop(stop, "between jobs")
                _barrier(d)
                prev = _read_result(job_dir / "result.json")
                if prev and prev.get("status") in ("done", "failed"):
                    if first_pass:
                        _say(cfg, f"{step.name:>24} seed {seed}: {prev['status']} already, skipped")
                    continue
                claim = _claim(job_dir, d, cfg.claim_timeout)
                if isinstance(claim, ClaimInfo):
                    elsewhere[job_dir] = f"{step.name}/seed{seed} ({claim.describe()})"
                    continue
                with claim:
                    if key not in datas:
                        datas[key] = load_data(cfg.data, recipe=recipe, download=cfg.download and d.main)
                        _check_stop(stop, "while loading data")
                    data = datas[key]
                    job = Job(step=step, seed=seed, recipe=recipe, spec=_train_spec(step, cfg, data, recipe),
                              dir=job_dir)
                    try:
                        rec = run_job(job, cfg, data, stop)
                    except _StopRequested as exc:
                        if d.main:
                            print(f"interrupted: {exc}", file=sys.stderr, flush=True)
                        raise KeyboardInterrupt from None
                acc = (f"top1 {rec['top1']:.2f} top5 {rec['top5']:.2f}" if rec.get("top1") is not None
                       else f"FAILED ({rec.get('reason')})")
                _say(cfg, f"{step.name:>24} seed {seed}: {rec['status']}, {acc}, {rec['gmacs'] * 1000:.1f} MMACs, "
                          f"{rec['params_m']:.3f} M params, {rec['wall_s']:.1f} s [{recipe.name}]")
        first_pass = False
        elsewhere = {j: text for j, text in elsewhere.items() if (_read_result(j / "result.json") or {})
                     .get("status") not in ("done", "failed")}
        if not elsewhere or not wait:
            if elsewhere:
                _say(cfg, f"{len(elsewhere)} job(s) running in other processes: {', '.join(elsewhere.values())}")
            break
        if not waiting_said:
            _say(cfg, f"waiting for {len(elsewhere)} job(s) running in other processes "
                      f"(taken over if their owner stops): {', '.join(elsewhere.values())}")
            waiting_said = True
        for _ in range(max(1, int(poll_s / 0.1))):
            _check_stop(stop, "while waiting for other processes")
            time.sleep(0.1)
    _say(cfg, f"run finished in {time.perf_counter() - t_run:.1f} s: {cfg.out}")
    return cfg.out


def _worker_main(cfg: RunConfig, index: int, threads: int) -> None:
    """One local worker process: the same claim loop as a single ``train`` process."""
    # A parent started in the background by a shell ignores SIGINT, and spawned children inherit
    # that; the parent forwards Ctrl-C / SIGTERM as SIGINT, so restore Python's handler here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    torch.set_num_threads(threads)
    cfg = dataclasses.replace(cfg, worker=index, progress=False,
                              device=f"cuda:{index}" if cfg.device.startswith("cuda") else cfg.device)
    try:
        run(cfg)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except ModernizeError as exc:
        print(f"[w{index}] error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def run_workers(cfg: RunConfig, *, workers: int, threads: int | None = None) -> Path:
    """Run ``workers`` local processes on one run folder; the claims share the jobs out.

    Plain ``multiprocessing`` processes (spawned), not a ``ProcessPoolExecutor``: a pool whose
    worker dies is broken as a whole and stops the healthy workers too; here the others carry
    on and take the dead worker's job over from its checkpoint."""
    if workers <= 1:
        return run(cfg)
    if cfg.dist.active:
        raise ConfigError("--workers N > 1 runs local processes; under torchrun use one worker per process group")
    if cfg.device.startswith("cuda"):
        if cfg.device != "cuda":
            raise ConfigError(f"--workers {workers} gives worker i the GPU cuda:i; use --device cuda, not {cfg.device}")
        if workers > torch.cuda.device_count():
            raise ConfigError(f"--workers {workers}: only {torch.cuda.device_count()} GPU(s) visible (one per worker)")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    with _Interrupt() as stop:
        _preflight(cfg, stop)
    cfg = dataclasses.replace(cfg, force=False)  # what differed is moved aside; workers must not move more
    print(f"run {cfg.out}: {workers} local workers x {threads} thread(s), "
          f"{len(cfg.steps)} step(s) x {len(cfg.seeds)} seed(s)", flush=True)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(cfg, i, threads), name=f"modernize-worker-{i}")
             for i in range(workers)]
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    except KeyboardInterrupt:  # Ctrl-C reached the workers too; a SIGTERM to us is passed on
        for p in procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join()
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
    codes = [p.exitcode for p in procs]
    if 130 in codes:
        raise KeyboardInterrupt
    if any(c == 2 for c in codes):
        raise ConfigError(f"a worker stopped on an error (exit codes {codes}); see its 'error:' line above")
    unfinished = [f"{s.name}/seed{k}" for s in cfg.steps for k in cfg.seeds
                  if (_read_result(cfg.out / s.name / f"seed{k}" / "result.json") or {}).get("status")
                  not in ("done", "failed")]
    if unfinished:
        raise ConfigError(f"workers ended (exit codes {codes}) with {len(unfinished)} job(s) unfinished: "
                          f"{', '.join(unfinished)}; rerun the same command to resume them")
    return cfg.out


def pending_jobs(cfg: RunConfig) -> list[tuple[str, int]]:
    """The (step, seed) jobs of a run that are neither done nor failed."""
    return [(s.name, k) for s in cfg.steps for k in cfg.seeds
            if (_read_result(cfg.out / s.name / f"seed{k}" / "result.json") or {}).get("status")
            not in ("done", "failed")]


def record_run(cfg: RunConfig) -> None:
    """Check the run (fingerprints of its jobs, data, batch), then create the run folder and its
    run.json (or check it), as ``run`` does before training."""
    with _Interrupt() as stop:
        _preflight(cfg, stop)


def train_roadmap(roadmap: Roadmap | str | Path | None = None, *, data: str = "fashion-mnist",
                  recipe: Recipe | str | Path | None = None, seeds: Sequence[int] = (0,), out: Path,
                  steps: Sequence[str] | None = None, device: str | None = "auto",
                  proxy: ProxyScale | None = None, download: bool = False, ckpt_every: int = 0,
                  compile: bool | None = None, progress: bool = True, workers: int = 1,
                  threads: int | None = None, claim_timeout: float = DEFAULT_TIMEOUT_S,
                  tensorboard: bool = False, force: bool = False) -> Path:
    """Train every step (or ``steps``) of a roadmap for each seed into ``out``; rerunning the
    same call resumes. ``recipe`` replaces the roadmap's fixed recipe (step overrides stay).
    ``workers`` > 1 trains that many jobs side by side in local processes (``threads`` each)."""
    cfg = prepare_run(roadmap, data=data, recipe=recipe, seeds=seeds, out=out, steps=steps, device=device,
                      proxy=proxy, download=download, ckpt_every=ckpt_every, compile=compile, progress=progress,
                      claim_timeout=claim_timeout, tensorboard=tensorboard, force=force)
    if workers > 1:
        return run_workers(cfg, workers=workers, threads=threads)
    if threads:
        torch.set_num_threads(threads)
    return run(cfg)


__all__ = ["LOG_COLUMNS", "RunConfig", "evaluate", "make_optimizer", "make_scheduler", "param_groups",
           "pending_jobs", "prepare_run", "record_run", "run", "run_job", "run_workers", "train_roadmap"]
