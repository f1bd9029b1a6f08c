"""Cluster launch: one Slurm array task per pending (step, seed) job, through ``submitit``
(optional dependency: ``pip install modernize[slurm]``), as the official ConvNeXt code does.

Each task runs the same engine on its one job: the submitted ``RunRequest`` and ``Execution``
(pickled whole) narrowed to its step and seed, ``train_roadmap(request, execution)``:
DDP across its ``gpus_per_job`` GPUs x ``nodes_per_job`` nodes through torch.distributed's
``env://`` variables, which ``submitit.helpers.TorchDistributedEnvironment`` exports. The job
claims (``claims.py``) still apply, so a task and a local ``train`` on the same run folder
never train the same job twice; a preempted or timed-out task is requeued and resumes from
its checkpoint, and a cancelled one (``scancel``: SIGTERM) saves a checkpoint and stops, so
submitting the command again resumes it.

The defaults fit the cluster found: GPU tasks where the partition has GPU gres (``sinfo -o
%G``), CPU tasks (``--device cpu``) where it has none. ``wait_jobs`` follows the tasks with
``squeue`` (which needs no accounting database, unlike ``sacct``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .request import Execution, RunRequest, request_of

if TYPE_CHECKING:
    from .roadmap import Roadmap

ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "PREEMPTED"}
"""Slurm job states of a task that has not ended (``squeue -o %T``)."""
NEVER_STARTS = {"PartitionNodeLimit", "PartitionTimeLimit", "PartitionConfig", "BadConstraints", "PartitionDown",
                "InvalidAccount", "InvalidQOS", "QOSMaxNodePerJobLimit", "QOSMaxWallDurationPerJobLimit"}
"""Pending reasons (``squeue -o %r``) that waiting does not clear."""


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int | None = None
    """None: 1 where the partition has GPU gres (``sinfo -o %G``), else 0 (CPU tasks)."""
    nodes_per_job: int = 1
    array_parallelism: int = 64
    time_min: int = 4320
    cpus_per_gpu: int = 10
    cluster: str | None = None
    """submitit's cluster: None = Slurm (refused where there is none: ``check_slurm``); 'local' for tests."""


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """How one submitted task ended: ``state`` is done, failed (the job's own NaN status), error
    (an exception in the task) or the Slurm state of a task that ended without a result."""

    job_id: str
    step: str
    seed: int
    state: str
    detail: str
    log: Path


def cluster_has_gpus(partition: str | None, cluster: str | None = None) -> bool | None:
    """Whether the partition (or any, if None) offers GPU gres; None when Slurm cannot be asked."""
    if cluster == "local":
        import torch

        return torch.cuda.is_available()
    if shutil.which("sinfo") is None:
        return None
    cmd = ["sinfo", "-h", "-o", "%G"] + (["-p", partition] if partition else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return any("gpu" in line for line in proc.stdout.split())


def check_slurm(opts: SlurmOptions) -> None:
    """A ``ConfigError`` where Slurm cannot take the jobs: no ``sbatch`` on PATH, or a partition
    that ``sinfo`` does not list. Checked before anything is written; there is no fallback to
    running the tasks here (submitit's local executor is for tests, ``cluster='local'``)."""
    if opts.cluster == "local":
        return
    if shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm: no 'sbatch' on PATH (Slurm is not installed or not set up here; "
                          "run on a login node of the cluster, or train here with --launcher local)")
    if not opts.partition or shutil.which("sinfo") is None:  # no partition named: Slurm's default one
        return
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"--launcher slurm: cannot ask Slurm for its partitions (sinfo: {exc})") from None
    if proc.returncode != 0:
        why = " ".join(proc.stderr.split())[:300] or f"exit code {proc.returncode}"
        raise ConfigError(f"--launcher slurm: cannot ask Slurm for its partitions (sinfo: {why})")
    names = [p.rstrip("*") for p in proc.stdout.split()]
    if opts.partition not in names:
        raise ConfigError(f"--partition {opts.partition}: no such Slurm partition "
                          f"(partitions: {', '.join(dict.fromkeys(names)) or 'none'})")


def resolve_options(opts: SlurmOptions, device: str) -> tuple[SlurmOptions, str]:
    """Fill in ``gpus_per_job`` from the cluster and ``device`` from the GPUs: CPU tasks run
    ``--device cpu``, GPU tasks ``cuda``; a CUDA device without GPUs is refused here, not in
    every task's log. Slurm itself is checked first (``check_slurm``)."""
    check_slurm(opts)
    gpus = opts.gpus_per_job
    if gpus is None:
        gpus = 0 if cluster_has_gpus(opts.partition, opts.cluster) is False else 1
    if device in ("auto", None):
        device = "cuda" if gpus else "cpu"
    if device.startswith("cuda") and not gpus:
        raise ConfigError(f"--device {device} with --gpus-per-job 0: the tasks would have no GPU "
                          "(use --device cpu, or --gpus-per-job N on a partition with GPUs)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"--device '{device}': expected cpu, cuda or auto")
    return dataclasses.replace(opts, gpus_per_job=gpus), device


class JobTask:
    """The picklable callable one array task runs; ``checkpoint`` requeues it on preemption.
    It holds the submitted request and execution themselves, so the task trains exactly what
    was checked at submission."""

    def __init__(self, request: RunRequest, execution: Execution, step: str, seed: int) -> None:
        self.request, self.execution, self.step, self.seed = request, execution, step, seed

    def __call__(self) -> dict[str, Any]:
        import submitit

        from .roadmap import Roadmap, import_user_modules
        from .train import train_roadmap

        if isinstance(self.request.roadmap, Roadmap):  # a new process: register its kinds
            import_user_modules(self.request.roadmap)
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # one process per GPU, joined through env:// (RANK, WORLD_SIZE, MASTER_*)
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        # torch's own choice (every core) unless asked: the task's cores
        threads = self.execution.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0) or None
        out = train_roadmap(dataclasses.replace(self.request, steps=(self.step,), seeds=(self.seed,)),
                            dataclasses.replace(self.execution, progress=False, threads=threads))
        return json.loads((Path(out) / self.step / f"seed{self.seed}" / "result.json").read_text())

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(JobTask(self.request, self.execution, self.step, self.seed))


def _refusal(exc: BaseException, opts: SlurmOptions) -> ConfigError:
    """sbatch's error lines as one line, with a hint for the refusals a flag causes."""
    lines = [ln.strip().removeprefix("sbatch: error: ") for ln in str(exc).splitlines() if ln.strip()]
    msg = "; ".join(lines) or type(exc).__name__
    hint = ""
    if "gres" in msg.lower():
        hint = (f" (--gpus-per-job {opts.gpus_per_job}: partition {opts.partition or '(default)'} has no such GPUs;"
                " `sinfo -o '%P %G'` lists them; --gpus-per-job 0 runs CPU tasks)")
    elif "partition" in msg.lower():
        hint = " (`sinfo -s` lists the partitions)"
    return ConfigError(f"sbatch refused the jobs: {msg}{hint}")


def submit(pending: list[tuple[str, int]], request: RunRequest, execution: Execution, opts: SlurmOptions) -> list[Any]:
    """Submit one array task per ``(step, seed)``; returns submitit's job handles."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install 'modernize[slurm]'") from None
    if not pending:
        return []
    check_slurm(opts)
    # Named, not auto: submitit's auto choice runs the tasks here when it finds no sbatch.
    executor = submitit.AutoExecutor(folder=str(request.out / "slurm" / "%j"), cluster=opts.cluster or "slurm")
    gpus = opts.gpus_per_job or 0
    params: dict[str, Any] = dict(timeout_min=opts.time_min, nodes=opts.nodes_per_job,
                                  tasks_per_node=max(1, gpus), gpus_per_node=gpus,
                                  cpus_per_task=opts.cpus_per_gpu if gpus else 1, name="modernize")
    if executor.cluster == "slurm":
        params |= dict(slurm_array_parallelism=opts.array_parallelism)
        if opts.partition:
            params["slurm_partition"] = opts.partition
    executor.update_parameters(**params)
    try:  # submitit echoes sbatch's stderr before raising: the one-line error below says it
        with contextlib.redirect_stderr(io.StringIO()), executor.batch():
            jobs = [executor.submit(JobTask(request, execution, step, seed)) for step, seed in pending]
    except submitit.core.utils.FailedJobError as exc:
        raise _refusal(exc, opts) from None
    return jobs


def submit_roadmap(request: RunRequest | Roadmap | str | Path | None = None, execution: Execution | None = None, *,
                   slurm: SlurmOptions, **options: Any) -> list[Any]:
    """Submit every pending (step, seed) job as one Slurm array task (``launch.py``); takes what
    ``train_roadmap`` takes. Validated here first (on a login node without a GPU: the device is
    checked by the tasks), where run.json is written, ``--force`` moves what differs aside and
    ``--download`` fetches the data; ``device='auto'`` follows the GPUs per job
    (``resolve_options``). Each task gets the request pinned to what was checked: the roadmap,
    recipe and proxy resolved, so an edited recipe file does not change a queued task."""
    from .train import pending_jobs, prepare_run, record_run

    request, execution = request_of(request, execution, options)
    if execution.workers != 1:
        raise ConfigError("--workers is for local runs; with --launcher slurm each job is its own array task")
    slurm, device = resolve_options(slurm, execution.device)
    cfg = prepare_run(request, dataclasses.replace(execution, device="cpu"))
    record_run(cfg)
    pinned = dataclasses.replace(request, roadmap=cfg.roadmap, recipe=cfg.recipe, data=str(cfg.data),
                                 proxy=cfg.proxy, out=cfg.out, force=False)
    return submit(pending_jobs(cfg), pinned, dataclasses.replace(execution, device=device, download=False), slurm)


def _squeue_states(jobs: list[Any]) -> dict[str, tuple[str, str]] | None:
    """``{task id: (state, reason)}`` of the tasks Slurm still lists; None where squeue cannot be asked."""
    arrays = sorted({str(j.job_id).split("_")[0] for j in jobs})
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T %r", "-j", ",".join(arrays)], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return {} if "invalid job id" in proc.stderr.lower() else None
    rows = [line.split(maxsplit=2) for line in proc.stdout.splitlines()]
    return {r[0]: (r[1], r[2] if len(r) > 2 else "") for r in rows if len(r) >= 2}


def _outcome(job: Any, state: str | None) -> TaskOutcome:
    task: JobTask = job.submission().function
    base = dict(job_id=str(job.job_id), step=task.step, seed=task.seed, log=Path(job.paths.stderr))
    if not job.paths.result_pickle.exists():
        return TaskOutcome(state=(state or "ended").lower(), detail="no result: cancelled, killed or out of time "
                           f"(sacct -j {job.job_id} tells which, where accounting is on)", **base)
    try:
        result = job.result()
    except Exception as exc:  # the task's exception, its traceback between two rules in submitit's message
        parts = str(exc).split("-" * 22)
        lines = [ln.strip() for ln in (parts[1] if len(parts) >= 3 else str(exc)).splitlines() if ln.strip()]
        return TaskOutcome(state="error", detail=lines[-1] if lines else type(exc).__name__, **base)
    status = str(result.get("status", "done"))
    return TaskOutcome(state=status, detail=str(result.get("reason") or f"top-1 {result.get('top1')}"), **base)


def wait_jobs(jobs: list[Any], *, poll_s: float = 5.0, note: Callable[[str], None] = print) -> list[TaskOutcome]:
    """Wait until every task has ended (a result file, or gone from ``squeue``, or submitit's own
    state for the local executor); one outcome per task, in submission order. A task pending for
    a reason that no wait removes (more nodes than the partition has, ...) is noted once."""
    import submitit

    outcomes: dict[int, TaskOutcome] = {}
    noted: set[str] = set()
    while len(outcomes) < len(jobs):
        left = [j for i, j in enumerate(jobs) if i not in outcomes]
        queued = _squeue_states(left) if isinstance(left[0], submitit.SlurmJob) else None
        for i, job in enumerate(jobs):
            if i in outcomes:
                continue
            state, reason = (queued or {}).get(str(job.job_id), (None, ""))
            if state == "PENDING" and reason in NEVER_STARTS and str(job.job_id) not in noted:
                noted.add(str(job.job_id))
                note(f"warning: task {job.job_id} cannot start as submitted (Slurm: {reason}; see "
                     f"`scontrol show partition`); scancel it and submit with other flags")
            gone = queued is not None and (state is None or state not in ACTIVE)
            if job.paths.result_pickle.exists() or gone or (queued is None and job.done()):
                outcomes[i] = _outcome(job, state)
        if len(outcomes) < len(jobs):
            time.sleep(poll_s)
    return [outcomes[i] for i in range(len(jobs))]


__all__ = ["JobTask", "SlurmOptions", "TaskOutcome", "check_slurm", "cluster_has_gpus", "resolve_options", "submit",
           "submit_roadmap", "wait_jobs"]
