"""The training loop: one epoch of training (``train_epoch``), then precise BN and the
evaluation (``validate``). A job (``job.py``) calls these once per epoch."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..data import BatchAugment, Data
from ..device import autocast
from ..recipe import Recipe
from ..runfolder import LogRow
from .batches import epoch_batches, epoch_order
from .dist import Dist, any_rank
from .optim import make_optimizer, make_scheduler
from .progress import progress_bar
from .seeds import PRECISE_BN_ORDER_SEED, data_order_seed, epoch_seed, seed_everything


class StopInEval(Exception):
    """A stop request during precise BN or evaluation."""


@dataclass
class Stopwatch:
    """Seconds spent so far: those of earlier processes (from a checkpoint) plus this one's
    since ``start``. The one record of an elapsed time, so it is never carried twice."""

    before: float = 0.0
    t0: float | None = None

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self.before, self.t0 = self.secs(), None

    def secs(self) -> float:
        return self.before + (time.perf_counter() - self.t0 if self.t0 is not None else 0.0)


@dataclass
class EpochSums:
    """The running sums of the epoch in progress (what a mid-epoch checkpoint carries)."""

    loss: float = 0.0
    n: int = 0
    """Optimizer steps summed into ``loss``."""
    seen: int = 0
    """Training images, over all ranks."""
    clock: Stopwatch = field(default_factory=Stopwatch)

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's ``partial`` record."""
        return {"loss": self.loss, "n": self.n, "seen": self.seen, "secs": self.clock.secs()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochSums:
        return cls(loss=float(d["loss"]), n=int(d["n"]), seen=int(d["seen"]), clock=Stopwatch(float(d["secs"])))


@dataclass
class TrainState:
    """Where a job is: what a checkpoint restores besides the modules."""

    epoch: int = 0
    """The (0-based) epoch being trained; ``epochs`` when the job's training is done."""
    iter: int = 0
    """Iterations (optimizer steps) of that epoch already trained; 0 at an epoch start."""
    best_top1: float = -1.0
    log: list[LogRow] = field(default_factory=list)
    sums: EpochSums = field(default_factory=EpochSums)
    clock: Stopwatch = field(default_factory=Stopwatch)
    """The job's training time, over every process that trained it."""


@dataclass
class Trainer:
    """One job's training objects, built once per job (``job.build_trainer``)."""

    model: nn.Module
    """The bare model: checkpointed, the EMA's source."""
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    criterion: nn.Module
    aug: BatchAugment
    autocast: Callable[[], Any]
    recipe: Recipe
    d: Dist
    device: str
    ipe: int
    """Iterations (optimizer steps) per epoch."""
    accum: int
    """Micro-batches per optimizer step (gradient accumulation; 1 = none)."""
    train_model: nn.Module
    """The model as trained: the bare model until the job wraps it in DDP / torch.compile
    (after resume, where those apply)."""

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def make_trainer(model: nn.Module, recipe: Recipe, aug: BatchAugment, *, device: str, d: Dist, lr: float,
                 ipe: int, accum: int) -> Trainer:
    """The optimizer, schedule, scaler, EMA and loss of ``recipe`` around ``model``: one
    construction for a job, for the plan's timing and for ``bench``, so all three time and run
    the same update."""
    opt = make_optimizer(model, recipe, lr)
    sched = make_scheduler(opt, recipe, ipe)
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda") and recipe.precision == "fp16")
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True) \
        if recipe.ema else None
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    return Trainer(model=model, opt=opt, sched=sched, scaler=scaler, ema=ema, criterion=criterion, aug=aug,
                   autocast=functools.partial(autocast, device, recipe.precision), recipe=recipe, d=d,
                   device=device, ipe=ipe, accum=accum, train_model=model)


@dataclass(frozen=True)
class EpochEnd:
    status: str
    """``trained`` (the whole epoch), ``failed`` (non-finite loss) or ``stopped`` (a stop request;
    a checkpoint was saved at iteration ``it``)."""
    it: int
    secs: float = 0.0
    loss: float = math.nan


def train_epoch(t: Trainer, state: TrainState, data: Data, *, job_seed: int, stop: Callable[[], bool],
                ckpt_every: int, save: Callable[[TrainState], None], bar: str | None) -> EpochEnd:
    """Train epoch ``state.epoch`` from iteration ``state.iter``. ``save(state)`` writes a
    mid-epoch checkpoint (every ``ckpt_every`` iterations, and when a stop is requested);
    ``bar`` is the progress bar's label, None for no bar."""
    d, recipe = t.d, t.recipe
    t.train_model.train()
    if state.iter == 0:
        seed_everything(epoch_seed(job_seed, state.epoch, d.rank))
        state.sums = EpochSums()
    batches = epoch_batches(data, batch=recipe.batch_size * t.accum, d=d,
                            epoch_seed=data_order_seed(job_seed, state.epoch), skip=state.iter, device=t.device)
    pbar = progress_bar(t.ipe, bar, True) if bar is not None else None
    if pbar is not None:
        pbar.update(state.iter)
    sums = state.sums
    sums.clock.start()
    for x, y in batches:
        loss, n = train_step(t, x, y)
        state.iter += 1
        loss_value, stop_all = _reduce(loss, stop(), d, t.device)
        if not math.isfinite(loss_value):
            if pbar is not None:
                pbar.close()
            return EpochEnd("failed", state.iter, loss=loss_value)
        sums.loss += loss_value
        sums.n += 1
        sums.seen += n * d.world
        if pbar is not None:
            pbar.set_postfix(loss=f"{sums.loss / sums.n:.3f}",
                             img_s=f"{sums.seen / max(sums.clock.secs(), 1e-9):.0f}", refresh=False)
            pbar.update(1)
        if stop_all or (ckpt_every and state.iter % ckpt_every == 0 and state.iter < t.ipe):
            save(state)
            if stop_all:
                if pbar is not None:
                    pbar.close()
                return EpochEnd("stopped", state.iter)
    if pbar is not None:
        pbar.close()
    sums.clock.stop()
    return EpochEnd("trained", state.iter, secs=sums.clock.secs())


def train_step(t: Trainer, x: Tensor, y: Tensor) -> tuple[Tensor, int]:
    """One optimizer step on this process's share of an effective batch (the one step that
    training, ``train --plan``'s estimate and ``bench`` all run); returns the loss (the
    mean over the share) and the share's size. The share is augmented as one batch (the same
    draws as without accumulation), then forward and backward run in ``t.accum`` micro-batches
    whose gradients add up (each loss divided by ``t.accum``: a mean over the share); under DDP
    only the last micro-batch all-reduces the gradients."""
    x, y = t.aug(x, y)
    t.opt.zero_grad(set_to_none=True)
    total: Tensor | None = None
    for i, (xm, ym) in enumerate(zip(x.chunk(t.accum), y.chunk(t.accum), strict=True)):
        if t.recipe.channels_last:
            xm = xm.contiguous(memory_format=torch.channels_last)
        with _no_sync(t) if i < t.accum - 1 else contextlib.nullcontext():
            with t.autocast():
                loss = t.criterion(t.train_model(xm), ym)
                if t.accum > 1:
                    loss = loss / t.accum
            t.scaler.scale(loss).backward()
        total = loss.detach() if total is None else total + loss.detach()
    assert total is not None
    if t.recipe.grad_clip > 0:
        t.scaler.unscale_(t.opt)
        nn.utils.clip_grad_norm_(t.model.parameters(), t.recipe.grad_clip)
    t.scaler.step(t.opt)
    t.scaler.update()
    t.sched.step()
    if t.ema is not None:
        t.ema.update_parameters(t.model)
    return total, len(y)


def _no_sync(t: Trainer) -> contextlib.AbstractContextManager[Any]:
    """DDP's ``no_sync`` (gradients stay local) for a micro-batch that is not an update's last."""
    ddp = getattr(t.train_model, "_orig_mod", t.train_model)  # under torch.compile
    return ddp.no_sync() if isinstance(ddp, nn.parallel.DistributedDataParallel) else contextlib.nullcontext()


def _reduce(loss: Tensor, stop_here: bool, d: Dist, device: str) -> tuple[float, bool]:
    """The loss averaged over ranks, and whether any rank was asked to stop.

    The stop flag rides in the loss's all-reduce: one collective per iteration carries both,
    so every rank sees a SIGINT/SIGTERM that reached any one of them at the same iteration and
    all save the same checkpoint and stop together."""
    stats = torch.tensor([loss.detach().float().item(), float(stop_here)], dtype=torch.float64)
    if d.active:
        stats = stats.to(device)
        dist.all_reduce(stats)
        stats = stats.cpu()
        stats[0] /= d.world
    return stats[0].item(), stats[1].item() > 0


def log_row(epoch: int, sums: EpochSums, secs: float, val: tuple[float, float, float], lr: float) -> LogRow:
    """The log.csv row of a finished epoch (``epoch`` 0-based)."""
    val_loss, top1, top5 = val
    return LogRow(epoch=epoch + 1, train_loss=_fmt(sums.loss / max(1, sums.n)),
                  val_loss=_fmt(val_loss), top1=_fmt(top1), top5=_fmt(top5), lr=_fmt(lr),
                  img_per_s=round(sums.seen / max(secs, 1e-9), 1), seconds=round(secs, 3))


def _fmt(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def validate(t: Trainer, data: Data, stop: Callable[[], bool]) -> tuple[float, float, float]:
    """Precise BN (when the recipe asks for it), then (val_loss, top1, top5) of the evaluated
    model (the EMA when there is one); ``StopInEval`` on a stop request."""
    model = t.eval_model
    if t.recipe.precise_bn_batches:
        precise_bn(model, data, t.aug, n=t.recipe.precise_bn_batches, batch=t.recipe.batch_size, d=t.d,
                   device=t.device, channels_last=t.recipe.channels_last, stop=stop)
    return evaluate(model, data, t.aug, batch=max(256, t.recipe.batch_size), d=t.d, device=t.device,
                    autocast=t.autocast, channels_last=t.recipe.channels_last, stop=stop)


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, aug: BatchAugment, *, batch: int, d: Dist, device: str,
             autocast: Any, channels_last: bool = False,
             stop: Any = None) -> tuple[float, float, float]:
    """(val_loss, top1 %, top5 %) over this rank's share of the validation set, summed over ranks."""
    model.eval()
    n = len(data.val)
    chunks = data.val.batches(torch.arange(d.rank, n, d.world), batch=batch, device=device, loaders=data.loaders)
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    k = min(5, data.num_classes)
    # The stop check is agreed across ranks (one tiny all-reduce per batch) on the batches every
    # rank has (the shares differ by at most one image, so a rank may have one batch more).
    checks = -(-(n // d.world) // batch)
    for i, (x, y) in enumerate(chunks):
        if stop is not None and i < checks and any_rank(stop(), d, device):
            raise StopInEval
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
def precise_bn(model: nn.Module, data: Data, aug: BatchAugment, *, n: int, batch: int, d: Dist, device: str,
               channels_last: bool, stop: Any = None) -> None:
    """Exact BatchNorm statistics of the current weights over the first ``n`` batches of a
    fixed order of un-augmented training images, preprocessed as for evaluation
    (``data.train_eval``); no-op for models without BatchNorm."""
    from torch.optim.swa_utils import update_bn

    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    order = epoch_order(len(data.train_eval), batch=batch, d=d, epoch_seed=PRECISE_BN_ORDER_SEED, skip=0)
    source = data.train_eval.batches(order[:n * batch], batch=batch, device=device, loaders=data.loaders,
                                     drop_last=True)
    batches = []
    for x, _ in source:  # every rank draws the same number of batches
        if stop is not None and any_rank(stop(), d, device):
            raise StopInEval
        x = aug.normalize(x)
        batches.append(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        if len(batches) >= n:
            break
    update_bn(batches, model)
