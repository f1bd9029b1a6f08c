"""Cluster launch: one Slurm array task per pending (step, seed) job, through ``submitit``
(optional dependency: ``pip install modernize[slurm]``), as the official ConvNeXt code does.

Each task runs the same engine on its one job (``train_roadmap(steps=[step], seeds=[seed])``):
DDP across its ``gpus_per_job`` GPUs x ``nodes_per_job`` nodes through torch.distributed's
``env://`` variables, which ``submitit.helpers.TorchDistributedEnvironment`` exports. The job
claims (``claims.py``) still apply, so a task and a local ``train`` on the same run folder
never train the same job twice; a preempted or timed-out task is requeued and resumes from
its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .proxy import ProxyScale

if TYPE_CHECKING:
    from .recipe import Recipe
    from .roadmap import Roadmap


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int = 1
    nodes_per_job: int = 1
    array_parallelism: int = 64
    time_min: int = 4320
    cpus_per_gpu: int = 10
    cluster: str | None = None
    """submitit's cluster: None = auto (Slurm when ``sbatch`` exists), 'local' for tests."""


class JobTask:
    """The picklable callable one array task runs; ``checkpoint`` requeues it on preemption."""

    def __init__(self, train_kwargs: dict[str, Any], step: str, seed: int) -> None:
        self.train_kwargs, self.step, self.seed = train_kwargs, step, seed

    def __call__(self) -> dict[str, Any]:
        import submitit

        from .roadmap import Roadmap, import_user_modules
        from .train import train_roadmap

        if isinstance(self.train_kwargs.get("roadmap"), Roadmap):  # a new process: register its kinds
            import_user_modules(self.train_kwargs["roadmap"])
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # one process per GPU, joined through env:// (RANK, WORLD_SIZE, MASTER_*)
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        out = train_roadmap(steps=[self.step], seeds=[self.seed], progress=False, **self.train_kwargs)
        return json.loads((Path(out) / self.step / f"seed{self.seed}" / "result.json").read_text())

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(JobTask(self.train_kwargs, self.step, self.seed))


def submit(pending: list[tuple[str, int]], train_kwargs: dict[str, Any], out: Path, opts: SlurmOptions) -> list[Any]:
    """Submit one array task per ``(step, seed)``; returns submitit's job handles."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install 'modernize[slurm]'") from None
    if not pending:
        return []
    executor = submitit.AutoExecutor(folder=str(Path(out) / "slurm" / "%j"), cluster=opts.cluster)
    gpus = opts.gpus_per_job
    params: dict[str, Any] = dict(timeout_min=opts.time_min, nodes=opts.nodes_per_job,
                                  tasks_per_node=max(1, gpus), gpus_per_node=gpus,
                                  cpus_per_task=opts.cpus_per_gpu if gpus else 1, name="modernize")
    if executor.cluster == "slurm":
        params |= dict(slurm_array_parallelism=opts.array_parallelism)
        if opts.partition:
            params["slurm_partition"] = opts.partition
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(JobTask(train_kwargs, step, seed)) for step, seed in pending]
    return jobs


def submit_roadmap(roadmap: Roadmap | str | Path | None = None, *, slurm: SlurmOptions, data: str = "fashion-mnist",
                   recipe: Recipe | str | Path | None = None, seeds: Sequence[int] = (0,), out: Path,
                   steps: Sequence[str] | None = None, device: str = "cuda", proxy: ProxyScale | None = None,
                   ckpt_every: int = 0, compile: bool | None = None, claim_timeout: float = 300.0,
                   tensorboard: bool = False, accum_steps: int | None = None) -> list[Any]:
    """Submit every pending (step, seed) job as one Slurm array task (``launch.py``).
    Validated here first (on a login node without a GPU: the device is checked by the tasks)."""
    from .train import pending_jobs, prepare_run, record_run

    cfg = prepare_run(roadmap, data=data, recipe=recipe, seeds=seeds, out=out, steps=steps, device="cpu",
                      proxy=proxy, claim_timeout=claim_timeout, tensorboard=tensorboard, accum_steps=accum_steps)
    record_run(cfg)
    pending = pending_jobs(cfg)
    kwargs = dict(roadmap=cfg.roadmap, data=str(cfg.data), recipe=cfg.recipe, out=cfg.out, device=device,
                  proxy=cfg.proxy, ckpt_every=ckpt_every, compile=compile, claim_timeout=claim_timeout,
                  tensorboard=tensorboard, accum_steps=accum_steps)
    return submit(pending, kwargs, cfg.out, slurm)


__all__ = ["JobTask", "SlurmOptions", "submit", "submit_roadmap"]
