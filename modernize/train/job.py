"""One training job: one step of the roadmap with one seed, from scratch or resumed from its
checkpoint, into its job folder (``RUN_DIR/<step>/seed<k>``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..complexity import count
from ..data import BatchAugment, Data
from ..model import build_model
from ..provenance import code_version, machine
from ..recipe import Augmentation, DataPart, Recipe, config_hash
from ..roadmap import Step
from ..runfolder import JobConfig, JobResult, write_job_config, write_log, write_result
from ..spec import ArchSpec
from .batches import batching, check_batch, iters_per_epoch
from .checkpoint import LAST, PREV, Checkpointer, Interrupt, StopRequested, resume
from .config import RunConfig
from .fingerprint import fingerprint_parts
from .loop import EpochSums, StopInEval, Trainer, TrainState, log_row, make_trainer, train_epoch, validate
from .progress import epoch_line, tensorboard
from .seeds import model_init_seed, seed_everything


@dataclass
class Job:
    step: Step
    seed: int
    recipe: Recipe
    spec: ArchSpec
    dir: Path


def run_job(job: Job, cfg: RunConfig, data: Data, stop: Interrupt | None = None) -> dict[str, Any]:
    """Train one step with one seed (or resume it); returns its result record."""
    with (contextlib.nullcontext(stop) if stop is not None else Interrupt()) as stop_:
        return _run_job(job, cfg, data, stop_)


def _run_job(job: Job, cfg: RunConfig, data: Data, stop: Interrupt) -> dict[str, Any]:
    """Setup, resume, then per epoch: train, evaluate, checkpoint; result.json after each."""
    d, recipe = cfg.dist, job.recipe
    results = _Results(job, cfg)
    seed_everything(model_init_seed(job.seed))
    t = build_trainer(job, cfg, data)
    state = resume(t, job.dir, f"{job.step.name}/seed{job.seed}")
    # DDP / torch.compile wrap the model after resume: DDP's constructor broadcasts rank 0's
    # parameters and must see the resumed ones (wrapped before resume, a rank stopped in the
    # evaluation aborted: test_ddp_stop_in_evaluation_on_one_rank_stops_all_ranks_and_resumes).
    t.train_model = _wrap(t.model, cfg, recipe)
    state.clock.start()  # the job's clock runs from here (setup and resume not counted)
    ckpt = Checkpointer(t, job.dir, extra={"spec": job.spec.to_dict(), "recipe": job.recipe.to_dict()})
    if state.epoch >= recipe.epochs:
        return results.finished("done", state)
    results.write("running", state)
    for epoch in range(state.epoch, recipe.epochs):
        state.epoch = epoch
        end = train_epoch(t, state, data, job_seed=job.seed, stop=stop, ckpt_every=cfg.execution.ckpt_every,
                          save=ckpt.save,
                          bar=f"{job.step.name} s{job.seed} ep{epoch + 1}/{recipe.epochs}"
                          if cfg.execution.progress and d.main else None)
        if end.status == "failed":
            with contextlib.suppress(OSError):
                (job.dir / LAST).unlink()
            return results.finished("failed", state, failed_epoch=epoch + 1,
                                    reason=f"non-finite training loss ({end.loss}) at epoch {epoch + 1}, "
                                           f"iteration {end.it}")
        if end.status == "stopped":
            results.write("running", state)
            raise StopRequested(f"{job.step.name}/seed{job.seed}: stopped at epoch {epoch + 1}, "
                                f"iteration {end.it}; checkpoint saved, rerun the same command to resume")
        try:
            val = validate(t, data, stop=stop)
        except StopInEval:  # the epoch's training is done: resume re-runs only BN + evaluation
            state.iter = t.ipe
            ckpt.save(state)
            results.write("running", state)
            raise StopRequested(f"{job.step.name}/seed{job.seed}: stopped in the evaluation of epoch "
                                f"{epoch + 1}; checkpoint saved, rerun the same command to resume") from None
        state.best_top1 = max(state.best_top1, val[1])
        state.log.append(log_row(epoch, state.sums, end.secs, val, t.opt.param_groups[0]["lr"]))
        state.epoch, state.iter, state.sums = epoch + 1, 0, EpochSums()
        ckpt.save(state)
        _epoch_done(job, cfg, state, epoch, end.secs, t.ipe, val)
        results.write("running", state)
    return results.finished("done", state)


def build_trainer(job: Job, cfg: RunConfig, data: Data) -> Trainer:
    """The model (from the generators as seeded now), optimizer, schedule, scaler, EMA, loss and
    batch augmentation of a job."""
    d, device, recipe = cfg.dist, cfg.device, job.recipe
    model = build_model(job.spec).to(device)
    if recipe.channels_last:  # also on CPU: oneDNN's NHWC kernels are faster here, depthwise above all
        model = model.to(memory_format=torch.channels_last)
    b = batching(recipe, d.world)
    check_batch(job.step, recipe, data, d)
    aug = BatchAugment(recipe.part(DataPart), recipe.part(Augmentation), num_classes=data.num_classes,
                       mean=data.mean, std=data.std, per_sample=data.in_memory)
    return make_trainer(model, recipe, aug, device=device, d=d, lr=recipe.scaled_lr(b.global_batch),
                        ipe=iters_per_epoch(data, b.per_process, d), accum=b.accum)


def _wrap(model: nn.Module, cfg: RunConfig, recipe: Recipe) -> nn.Module:
    """The model as trained: DDP across ranks, ``torch.compile`` on CUDA when asked."""
    cuda = cfg.device.startswith("cuda")
    train_model: nn.Module = model
    if cfg.dist.active:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[cfg.dist.local_rank] if cuda else None)
    if (cfg.execution.compile if cfg.execution.compile is not None else recipe.compile) and cuda:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    return train_model


def _epoch_done(job: Job, cfg: RunConfig, state: TrainState, epoch: int, secs: float, ipe: int,
                val: tuple[float, float, float]) -> None:
    """log.csv, TensorBoard and the epoch's line (rank 0)."""
    if not cfg.dist.main:
        return
    write_log(job.dir, state.log)
    if cfg.execution.tensorboard:
        tensorboard(job.dir / "tb", state.log[-1], step=(epoch + 1) * ipe)
    if cfg.execution.progress:
        print(epoch_line(f"{job.step.name} seed{job.seed}", epoch, job.recipe.epochs, state.log[-1], secs,
                         top1=val[1], top5=val[2]), flush=True)


class _Results:
    """The job's config.json (written at once) and its result.json (after every epoch), with
    the code version and machine of the process that trains it."""

    def __init__(self, job: Job, cfg: RunConfig) -> None:
        d, recipe, res = cfg.dist, job.recipe, job.recipe.resolution
        cx = count(job.spec, res)
        parts = fingerprint_parts(cfg, job.step, recipe, job.seed)
        self.job, self.main = job, d.main
        self.base = {"step": job.step.name, "seed": job.seed, "recipe": recipe.name, "resolution": res,
                     "gmacs": round(cx.gmacs, 6), "params_m": round(cx.params_m, 6), "epochs": recipe.epochs,
                     "fingerprint": config_hash(parts), "code": code_version(),
                     "machine": machine(torch.cuda.get_device_name(cfg.device) if cfg.device.startswith("cuda")
                                        else None)}
        if d.main:
            gb = batching(recipe, d.world).global_batch
            write_job_config(job.dir, JobConfig(
                step=job.step.name, seed=job.seed, change=job.step.change, paper_row=job.step.paper_row,
                adopted=job.step.adopted, parent=job.step.parent, spec=job.spec.to_dict(),
                paper_spec=job.step.spec.to_dict(), recipe=recipe.to_dict(), data=str(cfg.data),
                proxy=cfg.proxy.to_dict(), device=cfg.device, world_size=d.world, per_process_batch=recipe.batch_size,
                global_batch=gb, lr=recipe.scaled_lr(gb), resolution=res, fingerprint=config_hash(parts),
                fingerprint_parts=parts, torch=torch.__version__))

    def write(self, status: str, state: TrainState, failed_epoch: int | None = None,
              reason: str | None = None) -> dict[str, Any]:
        last: dict[str, Any] = dict(state.log[-1]) if state.log else {}
        rec = JobResult(**self.base, status=status, top1=last.get("top1"), top5=last.get("top5"),
                        best_top1=state.best_top1 if state.best_top1 >= 0 else None, epochs_done=len(state.log),
                        wall_s=round(state.clock.secs(), 3), failed_epoch=failed_epoch, reason=reason)
        if self.main:
            write_result(self.job.dir, rec)
        return dict(rec)

    def finished(self, status: str, state: TrainState, **extra: Any) -> dict[str, Any]:
        """The final result.json; prev.pt is no longer needed."""
        rec = self.write(status, state, **extra)
        if self.main:
            with contextlib.suppress(OSError):
                (self.job.dir / PREV).unlink(missing_ok=True)
        return rec
