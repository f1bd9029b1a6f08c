"""A run request: what a run trains (``RunRequest``) apart from how it runs (``Execution``).

Every entry point (the command line, ``train_roadmap`` and ``plan_roadmap``, Slurm array tasks,
local workers, torchrun processes, explore) builds or receives these two frozen values and
passes them on whole, so each option's default lives in one place, its field here, and a
Slurm task rebuilds exactly the request that was submitted (the objects are pickled)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .claims import DEFAULT_TIMEOUT_S, check_timeout
from .errors import ConfigError
from .proxy import ProxyScale
from .recipe import Recipe
from .roadmap import Roadmap


def _whole(value: object, least: int) -> bool:
    """Whether ``value`` is an int (not a bool: ``True`` is no count) of at least ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """What is trained: the roadmap's steps x seeds under one recipe, proxy and data set, into
    one run folder. Resolved (``prepare_run``), these fields make the jobs' fingerprints, so one
    request trains the same jobs wherever and however it runs."""

    out: Path
    """The run folder (RUN_DIR)."""
    roadmap: Roadmap | str | Path | None = None
    """A roadmap, a built-in roadmap's name or a roadmap file; None: the default roadmap."""
    data: str = "fashion-mnist"
    """A data spec (``DataSpec.parse``): fashion-mnist[:DIR], cifar10[:ROOT], synthetic[:N], ..."""
    recipe: Recipe | str | Path | None = None
    """Replaces the roadmap's recipe (step overrides stay); None: the roadmap's, else 'paper'."""
    seeds: tuple[int, ...] = (0,)
    steps: tuple[str, ...] | None = None
    """Only these steps of the roadmap; None: every step."""
    proxy: ProxyScale | None = None
    """The proxy scale; None: the recipe's ``proxy`` key, else the paper's scale."""
    accum_steps: int | None = None
    """Replaces the run recipe's gradient accumulation (and its ``global_batch``)."""
    force: bool = False
    """Retrain the jobs whose fingerprint differs (their folders go to RUN_DIR/.replaced/)."""

    def __post_init__(self) -> None:
        # Sequences become tuples (a frozen, hashable request); refused values never make one.
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.steps is not None:
            object.__setattr__(self, "steps", tuple(self.steps))
        if not self.seeds:
            raise ConfigError("--seeds: give at least one seed")
        if any(s < 0 for s in self.seeds):
            raise ConfigError(f"--seeds: seeds must be >= 0, got {list(self.seeds)}")
        if self.accum_steps is not None and not _whole(self.accum_steps, 1):
            raise ConfigError(f"--accum-steps: a whole number >= 1, got {self.accum_steps!r}")


@dataclass(frozen=True, kw_only=True)
class Execution:
    """How a request runs: where, with how many processes and threads, what it shows and how
    often it saves. None of it changes a job's fingerprint (the numbers match up to
    floating-point order across devices and thread counts)."""

    device: str = "auto"
    """cpu | cuda | cuda:N | mps | auto."""
    workers: int = 1
    """Local worker processes training jobs side by side (CUDA: worker i on cuda:i)."""
    threads: int | None = None
    """torch threads per process; None: torch's choice (with workers > 1: cores / workers)."""
    compile: bool | None = None
    """torch.compile the model on CUDA; None: the recipe's ``compile``."""
    ckpt_every: int = 0
    """Also checkpoint every N iterations inside an epoch (0: at epoch ends and on Ctrl-C)."""
    claim_timeout: float = DEFAULT_TIMEOUT_S
    """Seconds without a heartbeat after which another process takes a job over."""
    tensorboard: bool = False
    """Also write TensorBoard scalars per job under ``<job dir>/tb`` (optional dependency)."""
    progress: bool = True
    """A progress bar per epoch (off in workers and Slurm tasks, which have no terminal)."""
    download: bool = False
    """Let torchvision download a missing data set."""
    loader_workers: int | None = None
    """DataLoader worker processes per loader of streamed data (None: this process's share of
    the cores, ``data.loader_workers``)."""
    plan: bool = True
    """Print the timed plan before training (``explore`` prints its own, round by round)."""

    def __post_init__(self) -> None:
        if not _whole(self.workers, 1):  # 0 would run serially, silently
            raise ConfigError(f"workers: a whole number >= 1, got {self.workers!r}")
        check_timeout(self.claim_timeout)
        if self.tensorboard:
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError:
                raise ConfigError("--tensorboard needs the tensorboard package: "
                                  "pip install 'modernize[tensorboard]'") from None


REQUEST_FIELDS = frozenset(f.name for f in dataclasses.fields(RunRequest))
EXECUTION_FIELDS = frozenset(f.name for f in dataclasses.fields(Execution))


def request_of(request: RunRequest | Roadmap | str | Path | None = None, execution: Execution | None = None,
               options: Mapping[str, Any] | None = None) -> tuple[RunRequest, Execution]:
    """The request and execution of a Python call: ``request`` itself, or (the keyword form,
    ``train_roadmap(roadmap, out=..., seeds=...)``) a roadmap whose options are keywords, each
    given to the dataclass that has that field. The one place keywords become a request, so
    the keyword form keeps the dataclasses' defaults."""
    options = dict(options or {})
    unknown = sorted(set(options) - REQUEST_FIELDS - EXECUTION_FIELDS - {"roadmap"})
    if unknown:
        raise TypeError(f"unexpected run option(s) {', '.join(unknown)} (what is trained: "
                        f"{', '.join(sorted(REQUEST_FIELDS))}; how: {', '.join(sorted(EXECUTION_FIELDS))})")
    asked = {k: v for k, v in options.items() if k in REQUEST_FIELDS}
    how = {k: v for k, v in options.items() if k in EXECUTION_FIELDS}
    if isinstance(request, RunRequest):
        request = dataclasses.replace(request, **asked) if asked else request
    else:
        request = RunRequest(**({"roadmap": request} | asked))
    execution = execution if execution is not None else Execution()
    return request, (dataclasses.replace(execution, **how) if how else execution)


__all__ = ["EXECUTION_FIELDS", "REQUEST_FIELDS", "Execution", "RunRequest", "request_of"]
