"""The whole run: every selected step and seed of a roadmap, job by job. Jobs are claimed one
at a time (``modernize.claims``), so any number of processes, local workers or hosts can share
one run folder; a finished or failed job is never trained again."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Hashable, Sequence
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..boundary import debug_asked, expected_message
from ..claims import MOVED_HINT, Claim, ClaimInfo, read_claim, try_claim
from ..data import Data, close_loaders, load_data, loader_workers
from ..errors import ConfigError
from ..files import check_guarded, check_writable_dir, guard_folder
from ..proxy import proxy_label
from ..recipe import Recipe
from ..request import Execution, RunRequest, request_of
from ..roadmap import Roadmap, Step, import_user_modules
from ..runfolder import FINISHED, is_finished, job_folder, read_result
from .batches import batching, check_batch
from .checkpoint import Interrupt, StopRequested, check_stop
from .config import RunConfig, data_key, data_size_notes, job_dir, prepare_run, train_spec
from .dist import Dist, any_rank, barrier, process_group
from .fingerprint import fingerprint_parts, job_mismatch, record_run_meta
from .job import Job, run_job
from .plan import hours_warning, plan_lines, plan_steps


def _say(cfg: RunConfig, text: str, **kw: Any) -> None:
    if cfg.dist.main:
        print(f"[w{cfg.worker}] {text}" if cfg.worker is not None else text, flush=True, **kw)


def _claim(folder: Path, d: Dist, timeout: float) -> Claim | ClaimInfo | contextlib.nullcontext[None]:
    """Rank 0 claims the job for the whole process group; the other ranks follow its answer."""
    got: Claim | ClaimInfo | None = try_claim(folder, timeout=timeout) if d.main else None
    if d.active:
        flag = [isinstance(got, Claim)]
        dist.broadcast_object_list(flag, src=0)
        if not d.main:
            return contextlib.nullcontext() if flag[0] else ClaimInfo("?", -1, 0.0, "", 0.0)
    assert got is not None
    return got


def run(cfg: RunConfig, *, wait: bool = True, poll_s: float = 2.0) -> Path:
    """Train every selected step and seed of a prepared run; returns the run directory.

    Jobs are claimed one at a time (``claims.py``), so any number of processes can share
    ``cfg.out``: a job running elsewhere is left to its owner; a finished or failed job is never
    retrained. With ``wait`` the process then waits for the jobs running elsewhere and takes
    over any whose owner dies. The engine's first step joins torchrun's process group; the run
    leaves it when it ends (``dist.process_group``)."""
    with process_group(cfg.device), Interrupt() as stop:
        datas = _preflight(cfg, stop, plan=cfg.execution.plan)
        try:  # the run folder may not move under us: writing would re-create it under the old name
            with guard_folder(cfg.out, MOVED_HINT):
                return _run(cfg, datas, stop, wait=wait, poll_s=poll_s)
        finally:
            for data in datas.values():
                close_loaders(data)


def _preflight(cfg: RunConfig, stop: Interrupt, load: bool = True, workers: int = 1,
               threads: int | None = None, plan: bool = True, write: bool = True) -> dict[Hashable, Data]:
    """Everything that can refuse a run, before anything is written to RUN_DIR: RUN_DIR
    writable, job folders inside it, job fingerprints (a job trained differently is refused
    unless ``force``), the data of every job still to train and its batch check; the plan
    (``plan.py``). Then (``write``) run.json, and with ``force`` the differing jobs are moved to
    ``RUN_DIR/.replaced/<time>/``; ``train --plan`` stops before that."""
    d = cfg.dist
    if cfg.worker is None:
        for note in cfg.notes:
            _say(cfg, note)
    if d.main:
        check_writable_dir(cfg.out)  # a file, read-only, /proc: refused before the data and the plan
    stale, pending = _stale_and_pending(cfg)
    if stale and not cfg.force:
        job, why = stale[0]
        more = f" (and {len(stale) - 1} more job(s))" if len(stale) > 1 else ""
        raise ConfigError(f"{job}: trained with a different configuration{more}; differs in: {why}; "
                          "rerun with --force to retrain (the old job folder is moved to RUN_DIR/.replaced/), "
                          "or use another --out")
    for folder, _ in stale:  # --force must not move a job folder out from under its trainer
        info = read_claim(folder)
        if info is not None and not info.stale(cfg.execution.claim_timeout):
            raise ConfigError(f"{folder}: being trained now ({info.describe()}); --force does not move a job "
                              "in training: stop that run (or let it finish), then rerun")
    datas: dict[Hashable, Data] = {}
    if load:
        for step, recipe, _ in pending:
            fresh = data_key(cfg, recipe) not in datas
            data = _load(cfg, datas, recipe, stop)
            check_batch(step, recipe, data, d)
            for note in data_size_notes(recipe, data, d) if fresh and cfg.worker is None else []:
                _say(cfg, note)
        if plan and cfg.worker is None and d.main:
            _print_plan(cfg, datas, pending, workers, threads, stop)
    if not write:
        return datas
    if d.main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        record_run_meta(cfg)
        _move_aside(cfg, stale)
    barrier(d)
    return datas


def _stale_and_pending(cfg: RunConfig) -> tuple[list[tuple[Path, str]], list[tuple[Step, Recipe, list[int]]]]:
    """The job folders trained differently (with what differs), and the steps with a job to
    train (with the seeds of those jobs)."""
    stale: list[tuple[Path, str]] = []
    pending: list[tuple[Step, Recipe, list[int]]] = []
    for step in cfg.steps:
        recipe = cfg.recipe_of(step)
        todo = []
        for seed in cfg.seeds:
            folder = job_dir(cfg, step, seed)
            why = job_mismatch(folder, fingerprint_parts(cfg, step, recipe, seed))
            if why:
                stale.append((folder, why))
                todo.append(seed)
            elif not is_finished(folder):
                todo.append(seed)
        if todo:
            pending.append((step, recipe, todo))
    if cfg.force:
        stale += _stale_outside(cfg)
    return stale, pending


def _stale_outside(cfg: RunConfig) -> list[tuple[Path, str]]:
    """With ``force``: job folders outside this command's steps x seeds that differ from its
    configuration. They are moved aside too (not retrained), or the run folder would keep jobs
    of the old configuration beside a run.json that describes the new one."""
    chosen = {(s.name, seed) for s in cfg.steps for seed in cfg.seeds}
    out: list[tuple[Path, str]] = []
    for step in cfg.roadmap:
        folder = cfg.out / step.name
        seeds = sorted(int(p.name[4:]) for p in folder.glob("seed*") if p.name[4:].isdigit()) if folder.is_dir() else []
        for seed in seeds:
            if (step.name, seed) in chosen:
                continue
            job = job_dir(cfg, step, seed)
            why = job_mismatch(job, fingerprint_parts(cfg, step, cfg.recipe_of(step), seed))
            if why:
                out.append((job, f"{why}; outside this command's --steps/--seeds, so not retrained"))
    return out


def _move_aside(cfg: RunConfig, stale: list[tuple[Path, str]]) -> None:
    """--force: the differing job folders go to ``RUN_DIR/.replaced/<time>/`` (nothing is deleted)."""
    if not stale:
        return
    aside = cfg.out / ".replaced" / time.strftime("%Y%m%d-%H%M%S")
    for folder, why in stale:
        target = aside / folder.relative_to(cfg.out)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder, target)
        _say(cfg, f"--force: {folder} differed ({why}); moved to {target}")


def _print_plan(cfg: RunConfig, datas: dict[Hashable, Data], pending: list[tuple[Step, Recipe, list[int]]],
                workers: int, threads: int | None, stop: Interrupt) -> None:
    """The plan of the jobs still to train, timed with the threads the jobs will have; a CPU
    run of an hour or more gets a warning line."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        plans = plan_steps(cfg, pending, datas, lambda r: datas[data_key(cfg, r)], stop=stop)
    finally:
        torch.set_num_threads(before)
    check_stop(stop, "while timing the plan")
    lines, wall = plan_lines(cfg, plans, workers)
    for line in lines:
        _say(cfg, line)
    warning = hours_warning(cfg, wall)
    if warning:
        print(warning, file=sys.stderr, flush=True)


def plan_roadmap(request: RunRequest | Roadmap | str | Path | None = None, execution: Execution | None = None,
                 **options: Any) -> None:
    """``train --plan``: the checks of the same run (``_preflight``: RUN_DIR, fingerprints, claims,
    data, batches, workers), then its plan, without training or writing anything. Takes what
    ``train_roadmap`` takes."""
    request, execution = request_of(request, execution, options)
    cfg = prepare_run(request, dataclasses.replace(execution, download=False))  # a plan downloads nothing either
    workers = cfg.execution.workers
    check_workers(cfg, workers)
    threads = cfg.execution.threads or (_worker_threads(workers) if workers > 1 else None)
    datas: dict[Hashable, Data] = {}
    with process_group(cfg.device), Interrupt() as stop:
        try:
            datas = _preflight(cfg, stop, workers=workers, threads=threads, write=False)
            if not _stale_and_pending(cfg)[1]:
                _say(cfg, f"plan: every job of {cfg.out} is finished; nothing to train")
        finally:
            for d in datas.values():
                close_loaders(d)


def _load(cfg: RunConfig, datas: dict[Hashable, Data], recipe: Recipe, stop: Interrupt) -> Data:
    """The data set of a recipe, loaded once per ``data_key``."""
    key = data_key(cfg, recipe)
    if key not in datas:
        datas[key] = load_data(cfg.data, key, download=cfg.execution.download and cfg.dist.main,
                               loader_workers=cfg.execution.loader_workers)
        check_stop(stop, "while loading data")
    return datas[key]


def _run(cfg: RunConfig, datas: dict[Hashable, Data], stop: Interrupt, *, wait: bool, poll_s: float) -> Path:
    d = cfg.dist
    _say(cfg, f"run {cfg.out}: roadmap {cfg.roadmap.name}, recipe {cfg.recipe.name}, data {cfg.data}, "
              f"device {cfg.device}, {batching(cfg.recipe, d.world).describe()}, "
              f"lr {cfg.recipe.scaled_lr(cfg.global_batch):.3g}, proxy {proxy_label(cfg.proxy)}, "
              f"{len(cfg.steps)} step(s) x {len(cfg.seeds)} seed(s), {torch.get_num_threads()} thread(s)")
    t_run = time.perf_counter()
    first_pass, waiting_said = True, False
    while True:
        elsewhere = _one_pass(cfg, datas, stop, first_pass)
        first_pass = False
        elsewhere = {j: text for j, text in elsewhere.items() if not is_finished(j)}
        if not elsewhere or not wait:
            if elsewhere:
                _say(cfg, f"{len(elsewhere)} job(s) running in other processes: {', '.join(elsewhere.values())}")
            break
        if not waiting_said:
            _say(cfg, f"waiting for {len(elsewhere)} job(s) running in other processes "
                      f"(taken over if their owner stops): {', '.join(elsewhere.values())}")
            waiting_said = True
        for _ in range(max(1, int(poll_s / 0.1))):
            check_stop(stop, "while waiting for other processes")
            time.sleep(0.1)
    _say(cfg, f"run finished in {time.perf_counter() - t_run:.1f} s: {cfg.out}")
    return cfg.out


def _one_pass(cfg: RunConfig, datas: dict[Hashable, Data], stop: Interrupt, first_pass: bool) -> dict[Path, str]:
    """Train every job not finished and not claimed elsewhere; returns the jobs running
    elsewhere (job folder -> ``step/seedK (owner)``)."""
    elsewhere: dict[Path, str] = {}
    for step in cfg.steps:
        recipe = cfg.recipe_of(step)
        for seed in cfg.seeds:
            folder = job_dir(cfg, step, seed)
            stop.flag = any_rank(stop.flag, cfg.dist, cfg.device)  # all ranks stop here together
            check_stop(stop, "between jobs")
            check_guarded(cfg.out)  # claiming would create the job folder: not in a moved run's old place
            prev = read_result(folder)
            if prev and prev.get("status") in FINISHED:
                if first_pass:
                    _say(cfg, f"{step.name:>24} seed {seed}: {prev['status']} already, skipped")
                continue
            claim = _claim(folder, cfg.dist, cfg.execution.claim_timeout)
            if isinstance(claim, ClaimInfo):
                elsewhere[folder] = f"{step.name}/seed{seed} ({claim.describe()})"
                continue
            with claim:
                rec = _train(cfg, datas, stop, step, seed, recipe, folder)
            acc = (f"top1 {rec['top1']:.2f} top5 {rec['top5']:.2f}" if rec.get("top1") is not None
                   else f"FAILED ({rec.get('reason')})")
            _say(cfg, f"{step.name:>24} seed {seed}: {rec['status']}, {acc}, {rec['gmacs'] * 1000:.1f} MMACs, "
                      f"{rec['params_m']:.3f} M params, {rec['wall_s']:.1f} s [{recipe.name}]")
    return elsewhere


def _train(cfg: RunConfig, datas: dict[Hashable, Data], stop: Interrupt, step: Step, seed: int, recipe: Recipe,
           folder: Path) -> dict[str, Any]:
    """One claimed job; a stop request inside it ends the run (KeyboardInterrupt)."""
    data = _load(cfg, datas, recipe, stop)
    job = Job(step=step, seed=seed, recipe=recipe, spec=train_spec(step, cfg, data, recipe), dir=folder)
    try:
        return run_job(job, cfg, data, stop)
    except StopRequested as exc:
        if cfg.dist.main:
            print(f"interrupted: {exc}", file=sys.stderr, flush=True)
        raise KeyboardInterrupt from None


def _worker_main(cfg: RunConfig, index: int, threads: int, workers: int, parent: int) -> None:
    """One local worker process: the same claim loop as a single ``train`` process. Its image
    loaders get its share of the cores (cores / ``workers``), not every core: each of the
    ``workers`` processes keeps its own persistent loader workers."""
    # The parent starts us with SIGINT blocked (a Ctrl-C while Python starts up would print a
    # traceback from multiprocessing's bootstrap), and a shell starts a background job with it
    # ignored: take it now, as a quiet stop (exit 130), with Python's handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        end_with_parent(parent)
        torch.set_num_threads(threads)
        import_user_modules(cfg.roadmap)  # a spawned process: register the roadmap's kinds again
        exe = cfg.execution
        share = loader_workers(processes=workers) if exe.loader_workers is None else exe.loader_workers
        cfg = dataclasses.replace(cfg, worker=index, execution=dataclasses.replace(exe, progress=False,
                                                                                    loader_workers=share),
                                  device=f"cuda:{index}" if cfg.device.startswith("cuda") else cfg.device)
        run(cfg)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # the command line's one line (boundary.py), once per worker
        msg = expected_message(exc)
        if msg is None or debug_asked():
            raise
        print(f"[w{index}] {msg}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def end_with_parent(parent: int) -> None:
    """End this process (SIGTERM: a checkpoint, then exit) when ``parent`` dies: on Linux the
    kernel sends it (``PR_SET_PDEATHSIG``); elsewhere a thread polls the parent pid. Without it a
    killed ``train --workers N`` leaves its workers training, orphaned."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGTERM, 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True, name="modernize-parent-watch").start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


def run_workers(cfg: RunConfig) -> Path:
    """Run ``cfg.execution.workers`` local processes on one run folder; the claims share the
    jobs out; each gets the same prepared run (its request and execution) by pickle.

    Plain ``multiprocessing`` processes (spawned), not a ``ProcessPoolExecutor``: a pool whose
    worker dies is broken as a whole and stops the healthy workers too; here the others carry
    on and take the dead worker's job over from its checkpoint."""
    workers = cfg.execution.workers
    if workers <= 1:
        return run(cfg)
    check_workers(cfg, workers)
    threads = cfg.execution.threads or _worker_threads(workers)
    with Interrupt() as stop:
        _preflight(cfg, stop, workers=workers, threads=threads, plan=cfg.execution.plan)
    # what differed is moved aside; workers must not move more
    cfg = dataclasses.replace(cfg, request=dataclasses.replace(cfg.request, force=False))
    print(f"run {cfg.out}: {workers} local workers x {threads} thread(s), "
          f"{len(cfg.steps)} step(s) x {len(cfg.seeds)} seed(s)", flush=True)
    codes = _start_and_join(cfg, workers, threads)
    if 130 in codes:
        raise KeyboardInterrupt
    if any(c == 2 for c in codes):
        raise ConfigError(f"a worker stopped on an error (exit codes {codes}); see its 'error:' line above")
    unfinished = [f"{s}/seed{k}" for s, k in pending_jobs(cfg)]
    if unfinished:
        raise ConfigError(f"workers ended (exit codes {codes}) with {len(unfinished)} job(s) unfinished: "
                          f"{', '.join(unfinished)}; rerun the same command to resume them")
    return cfg.out


def check_workers(cfg: RunConfig, workers: int) -> None:
    """What ``workers`` local processes need: no torchrun around them, one GPU each."""
    if workers <= 1:
        return
    if cfg.dist.active:
        raise ConfigError("--workers N > 1 runs local processes; under torchrun use one worker per process group")
    if cfg.device.startswith("cuda"):
        if cfg.device != "cuda":
            raise ConfigError(f"--workers {workers} gives worker i the GPU cuda:i; use --device cuda, not {cfg.device}")
        if workers > torch.cuda.device_count():
            raise ConfigError(f"--workers {workers}: only {torch.cuda.device_count()} GPU(s) visible (one per worker)")


def _worker_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


SIGINT_GRACE_S = 60.0
"""After a Ctrl-C, how long the workers have to stop by themselves (they got it too) before they
are sent SIGTERM: a second signal would stop a worker at once, without its checkpoint."""


def start_with_sigint_blocked(procs: Sequence[multiprocessing.process.BaseProcess]) -> list[int]:
    """Start ``procs`` with SIGINT blocked in them (the mask is inherited through exec) and return
    the SIGINTs this process got meanwhile. Each child unblocks it once Python has started, so a
    Ctrl-C during its start-up waits instead of printing a traceback from ``site``."""
    # multiprocessing's resource tracker unblocks SIGINT in the caller after starting itself
    # (bpo-33613), which would leave every worker started after it unprotected: start it first.
    resource_tracker.ensure_running()
    noted: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        for p in procs:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            p.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, before)
    return noted


def _start_and_join(cfg: RunConfig, workers: int, threads: int) -> list[int | None]:
    """Spawn the workers and wait for them; Ctrl-C (or a SIGTERM to us) is passed on as SIGTERM."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(cfg, i, threads, workers, os.getpid()),
                         name=f"modernize-worker-{i}") for i in range(workers)]
    terminated: list[int] = []

    def on_term(signum: int, frame: Any) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        # Started with SIGINT blocked (the mask is inherited through exec): a Ctrl-C while Python
        # starts up in a worker would print a traceback from multiprocessing's bootstrap; it waits
        # there until the worker can stop quietly. Here it is noted and taken after the starts.
        noted = start_with_sigint_blocked(procs)
        if noted:  # a Ctrl-C while the workers start up: they stop at once (SIGTERM), as before any job
            terminated.append(noted[0])
            raise KeyboardInterrupt
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        started = [p for p in procs if p.pid is not None]
        if not terminated:  # a Ctrl-C reached the whole group: each worker stops at its next iteration
            deadline = time.monotonic() + SIGINT_GRACE_S  # with a checkpoint and its own "interrupted" line
            for p in started:
                p.join(max(0.0, deadline - time.monotonic()))
        for p in started:  # a SIGTERM to us, or a Ctrl-C that reached only us: passed on
            if p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)  # type: ignore[arg-type]
        for p in started:
            p.join()
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
    return [p.exitcode for p in procs]


def pending_jobs(cfg: RunConfig) -> list[tuple[str, int]]:
    """The (step, seed) jobs of a run that are neither done nor failed."""
    return [(s.name, k) for s in cfg.steps for k in cfg.seeds if not is_finished(job_folder(cfg.out, s.name, k))]


def record_run(cfg: RunConfig) -> None:
    """Check the run (fingerprints of its jobs, data, batch), then create the run folder and its
    run.json (or check it), as ``run`` does before training (without the plan: a Slurm
    submission checks on a login node, not on the tasks' devices)."""
    with process_group(cfg.device), Interrupt() as stop:
        _preflight(cfg, stop, plan=False)


def train_roadmap(request: RunRequest | Roadmap | str | Path | None = None, execution: Execution | None = None,
                  **options: Any) -> Path:
    """Train every step (or ``steps``) of a roadmap for each seed into ``out``; rerunning the
    same call resumes. Takes a ``RunRequest`` (what is trained) and an ``Execution`` (how), or
    the keyword form ``train_roadmap(roadmap, out=..., seeds=..., workers=...)`` with their
    fields as keywords (``request_of``). ``workers`` > 1 trains that many jobs side by side in
    local processes (``threads`` each); they are spawned and import the calling script, so a
    script calls this under ``if __name__ == "__main__":`` (Python's rule for spawned
    processes, as for DataLoader workers)."""
    cfg = prepare_run(request, execution, **options)
    if cfg.execution.workers > 1:
        return run_workers(cfg)
    if cfg.execution.threads:
        torch.set_num_threads(cfg.execution.threads)
    return run(cfg)
