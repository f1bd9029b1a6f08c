"""Checkpoints and interruption. A job's ``last.pt`` holds the model, optimizer, scheduler,
scaler, EMA, the global generators of every rank and the position (epoch, iteration); the one
before it is kept as ``prev.pt`` until the job is done. SIGINT/SIGTERM only set a flag; the
loop checks it between iterations and saves a checkpoint on the way out."""

from __future__ import annotations

import contextlib
import copy
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..files import atomic_torch_save
from ..runfolder import short
from .loop import EpochSums, Stopwatch, Trainer, TrainState

LAST, PREV = "last.pt", "prev.pt"
_REQUIRED = {"model", "optimizer", "scheduler", "epoch", "iter", "rng"}


class StopRequested(Exception):
    """Ctrl-C: a checkpoint was saved at an iteration boundary; stop the whole run."""


class Interrupt:
    """SIGINT/SIGTERM set a flag; the loop checks it between iterations, so the checkpoint
    written on the way out is always consistent."""

    def __init__(self) -> None:
        self.flag = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
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

    def __call__(self) -> bool:
        """Whether a stop was requested (the loop's ``stop`` callable)."""
        return self.flag


def check_stop(stop: Interrupt, where: str) -> None:
    """Between jobs and while loading or waiting: a stop request ends the run here."""
    if stop.flag:
        print(f"interrupted {where}; rerun the same command to resume", file=sys.stderr, flush=True)
        raise KeyboardInterrupt


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(t: Trainer, job_dir: Path, state: TrainState, *, extra: dict[str, Any]) -> None:
    """``last.pt`` at (``state.epoch``, ``state.iter``), the old one kept as ``prev.pt``; every
    rank's generator state is gathered (rank 0 writes)."""
    rng = [rng_state()]
    if t.d.active:
        gathered: list[Any] = [None] * t.d.world
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
    if t.d.main:
        atomic_torch_save(job_dir / LAST, keep_previous=job_dir / PREV, obj={
            "model": t.model.state_dict(), "optimizer": t.opt.state_dict(), "scheduler": t.sched.state_dict(),
            "scaler": t.scaler.state_dict(), "ema": t.ema.state_dict() if t.ema is not None else None,
            "rng": rng, "epoch": state.epoch, "iter": state.iter, "best_top1": state.best_top1, "log": state.log,
            "partial": state.sums.to_dict(), "wall_s": state.clock.secs()} | extra)


@dataclass(frozen=True)
class Checkpointer:
    """Where and with what a job's checkpoints are written; ``save`` is the loop's ``save``."""

    t: Trainer
    job_dir: Path
    extra: dict[str, Any]
    """Stored beside the state for a reader of the file (the spec and recipe trained)."""

    def save(self, state: TrainState) -> None:
        save_checkpoint(self.t, self.job_dir, state, extra=self.extra)


def _move_aside(path: Path, why: str) -> None:
    """An unusable checkpoint goes to ``<name>.corrupt-<time>`` (kept for a post-mortem), with
    one warning line saying what is tried next."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    then = "trying prev.pt" if path.name == LAST and path.with_name(PREV).is_file() else "restarting the job"
    print(f"warning: {path}: {why}; moved to {aside.name}, {then}", file=sys.stderr, flush=True)


def _read(path: Path, device: str) -> dict[str, Any]:
    ck = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(ck, dict) or not _REQUIRED <= set(ck):
        raise ValueError("not a training checkpoint")
    return ck


def _apply(t: Trainer, ck: dict[str, Any]) -> None:
    t.model.load_state_dict(ck["model"])
    t.opt.load_state_dict(ck["optimizer"])
    t.sched.load_state_dict(ck["scheduler"])
    t.scaler.load_state_dict(ck["scaler"])
    if t.ema is not None and ck.get("ema") is not None:
        t.ema.load_state_dict(ck["ema"])


def _fresh_state(t: Trainer) -> dict[str, Any]:
    """A copy of the freshly initialised modules: ``load_state_dict`` copies the tensors that fit
    before it raises on those that do not, so a refused checkpoint must not leave a mix."""
    return copy.deepcopy({"model": t.model.state_dict(), "optimizer": t.opt.state_dict(),
                          "scheduler": t.sched.state_dict(), "scaler": t.scaler.state_dict(),
                          "ema": t.ema.state_dict() if t.ema is not None else None})


_MISFIT = (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError)
"""What restoring a checkpoint that reads but does not fit raises (edited, or another job's)."""


def _position(ck: dict[str, Any]) -> TrainState:
    epoch, it, log, partial = int(ck["epoch"]), int(ck["iter"]), ck["log"], ck["partial"]
    if epoch < 0 or it < 0 or not isinstance(log, list) or not isinstance(partial, dict):
        raise ValueError("its epoch, iteration, log or partial sums are out of range or of the wrong type")
    return TrainState(epoch=epoch, iter=it, best_top1=float(ck["best_top1"]), log=log,
                      sums=EpochSums.from_dict(partial), clock=Stopwatch(float(ck["wall_s"])))


def _restore(t: Trainer, ck: dict[str, Any]) -> TrainState:
    """Modules, position and this rank's generators from ``ck``; raises one of ``_MISFIT``."""
    _apply(t, ck)
    state = _position(ck)
    set_rng_state(ck["rng"][t.d.rank] if t.d.rank < len(ck["rng"]) else ck["rng"][0])
    return state


def _choose(t: Trainer, job_dir: Path) -> tuple[Path | None, TrainState]:
    """The newest checkpoint that reads and fits (``last.pt``, else ``prev.pt``), restored; one
    that does not is moved aside with one warning line. A checkpoint that reads but does not fit
    (edited, or copied from another job) is treated like an unreadable one: the job's fingerprint
    matched, so ``--force`` would not move it, and refusing would lock the user out."""
    fresh, rng0 = None, rng_state()
    for path in (job_dir / LAST, job_dir / PREV):
        if not path.is_file():
            continue
        try:
            ck = _read(path, t.device)
        except Exception as exc:  # empty, random bytes, truncated zip, wrong content
            _move_aside(path, f"unreadable checkpoint ({type(exc).__name__}: {short(str(exc), 80)})")
            continue
        fresh = fresh if fresh is not None else _fresh_state(t)
        try:
            return path, _restore(t, ck)
        except _MISFIT as exc:
            _apply(t, fresh)  # nothing half-loaded: the job restarts as if it never ran
            set_rng_state(rng0)
            _move_aside(path, f"checkpoint does not fit this step's model "
                              f"({type(exc).__name__}: {short(str(exc), 80)})")
    return None, TrainState()


def resume(t: Trainer, job_dir: Path, label: str) -> TrainState:
    """Restore the modules and the generators from the job's checkpoint; the state to go on
    from (a fresh one when there is no usable checkpoint). Under DDP rank 0 alone checks the
    files and moves the bad ones aside, then tells the other ranks which one to load: ranks
    deciding on their own would race on the files and could resume from different ones."""
    path, state = _choose(t, job_dir) if t.d.main else (None, TrainState())
    if t.d.active:
        box = [path.name if path is not None else None]
        dist.broadcast_object_list(box, src=0)
        if not t.d.main and box[0] is not None:
            path = job_dir / box[0]
            state = _restore(t, _read(path, t.device))
    if path is not None and t.d.main:
        print(f"  resuming {label} at epoch {state.epoch + 1}, iteration {state.iter}", flush=True)
    return state
