"""Running an explore: every spec a round needs is trained through ``train``'s job queue
(claims, local workers, Slurm array tasks, resume, Ctrl-C) in a content-addressed store.

The store is an ordinary run folder per (recipe values, data, proxy, global batch, torch):
``STORE/r-<hash>/``, whose steps are named by the content of their spec, ``s-<hash>/seed<k>``.
A spec equal by content to one trained before, in any round of any explore with the same
setup, is the same job folder and is reused; two processes on one store share the jobs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..complexity import count
from ..data import Data, close_loaders, data_key, load_data
from ..launch import SlurmOptions
from ..recipe import config_hash
from ..request import Execution, RunRequest
from ..roadmap import Roadmap, Step
from ..runfolder import NOT_IN_FINGERPRINT, is_finished, job_folder, read_result, refuse_stale
from ..spec import ArchSpec
from ..train.config import RunConfig, prepare_run, train_spec
from ..train.fingerprint import user_kind_hashes
from .candidates import CandidateSet
from .search import Scores

STORE_ROADMAP = "explore"
"""The name of every store's job roadmap: stores of one setup are one run configuration."""


QUIET = Execution(progress=False, plan=False)
"""How an explore trains by default: it prints its own plan and round lines, which a progress
bar or a plan per round would bury."""


@dataclass(frozen=True)
class Setup:
    """What an explore trains with: the start, the candidates, the launcher, and the run
    request of every round (its data, recipe, seeds, proxy, accumulation; its ``out`` is the
    store; the roadmap of a round's specs is filled in per round) with how it runs."""

    roadmap: Roadmap
    start: Step
    candidates: CandidateSet
    request: RunRequest
    execution: Execution = QUIET
    slurm: SlurmOptions | None = None

    @property
    def store(self) -> Path:
        """The store of every setup's run folders (``r-<hash>``): the request's run folder."""
        return self.request.out

    @property
    def imports(self) -> tuple[tuple[str, str], ...]:
        return tuple(dict.fromkeys((*self.roadmap.imports, *self.candidates.imports)))


@dataclass
class Tally:
    """Jobs this process found finished (reused) and those it saw finished after training."""

    reused: set[tuple[str, int]] = field(default_factory=set)
    trained: set[tuple[str, int]] = field(default_factory=set)


def spec_key(spec: ArchSpec) -> str:
    """The content key of a spec (its fields and the source of the user kinds it uses): the
    step name of its jobs in the store."""
    return "s-" + config_hash({"spec": spec.to_dict(), "kinds": user_kind_hashes(spec)})


def job_roadmap(setup: Setup, specs: Mapping[str, ArchSpec]) -> Roadmap:
    """A roadmap whose steps are the given specs, named by their keys (no recipe override)."""
    steps = tuple(Step(name=k, spec=s, change=k) for k, s in specs.items())
    return Roadmap(name=STORE_ROADMAP, path=setup.roadmap.path, base=setup.start.spec, steps=steps,
                   recipe=setup.roadmap.recipe, imports=setup.imports)


def prepare(setup: Setup, specs: Mapping[str, ArchSpec]) -> RunConfig:
    """``train``'s checks and resolution for these specs, into the store's run folder."""
    r = setup.request
    recipe = r.recipe if r.recipe is not None else (setup.roadmap.recipe or "paper")
    asked = dataclasses.replace(r, roadmap=job_roadmap(setup, specs), recipe=recipe, steps=None, force=False)
    cfg = prepare_run(asked, setup.execution)
    return dataclasses.replace(cfg, out=store_run(setup.store, cfg))


def store_run(store: Path, cfg: RunConfig) -> Path:
    """``STORE/r-<hash>``: the run folder of this recipe (values), data, proxy, batch and torch."""
    ident = {"recipe": {k: v for k, v in cfg.recipe.to_dict().items() if k not in NOT_IN_FINGERPRINT},
             "data": str(cfg.data), "proxy": cfg.proxy.to_dict(), "global_batch": cfg.global_batch,
             "torch": torch.__version__}
    return store / f"r-{config_hash(ident)}"


def scores_of(run_dir: Path, key: str, seeds: Sequence[int]) -> Scores:
    """A spec's scores from its job folders (a failed or missing job counts as failed)."""
    top1: list[float | None] = []
    gmacs, params, why = math.nan, math.nan, []
    for seed in seeds:
        rec = read_result(job_folder(run_dir, key, seed))
        if rec is None or rec.get("status") != "done" or rec.get("top1") is None:
            top1.append(None)
            why.append(f"seed {seed}: {rec.get('status') if rec else 'no result'}"
                       + (f" ({rec.get('reason')})" if rec and rec.get("reason") else ""))
        else:
            top1.append(float(rec["top1"]))
        if rec is not None:
            gmacs, params = float(rec["gmacs"]), float(rec["params_m"])
    return Scores(tuple(top1), gmacs, params, "; ".join(why))


def train_specs(setup: Setup, specs: Mapping[str, ArchSpec], tally: Tally) -> dict[str, Scores]:
    """Train (or reuse) every spec for every seed through ``train``'s engine; their scores."""
    cfg = prepare(setup, specs)
    jobs = [(k, s) for k in specs for s in setup.request.seeds]
    refuse_stale(cfg.out, [(k, specs[k].to_dict(), s) for k, s in jobs])  # a job folder copied in is no result
    before = {j for j in jobs if is_finished(job_folder(cfg.out, *j))}
    tally.reused |= before - tally.trained
    if len(before) < len(jobs):
        if setup.slurm is not None:
            _slurm(setup, cfg)
        else:
            _local(setup, cfg)
    tally.trained |= {j for j in jobs if j not in before and is_finished(job_folder(cfg.out, *j))}
    return {k: scores_of(cfg.out, k, setup.request.seeds) for k in specs}


def pinned(cfg: RunConfig) -> RunRequest:
    """The round's request as checked: its store run folder, its recipe and proxy resolved."""
    return dataclasses.replace(cfg.request, out=cfg.out, recipe=cfg.recipe, proxy=cfg.proxy)


def _local(setup: Setup, cfg: RunConfig) -> None:
    from ..train import train_roadmap

    train_roadmap(pinned(cfg), dataclasses.replace(setup.execution, plan=False))


def _slurm(setup: Setup, cfg: RunConfig) -> None:
    """One array task per pending job; waits for them (the next round needs their results)."""
    from ..launch import resolve_options, submit_roadmap, wait_jobs

    assert setup.slurm is not None
    opts, device = resolve_options(setup.slurm, setup.execution.device)
    jobs = submit_roadmap(pinned(cfg), dataclasses.replace(setup.execution, device=device), slurm=opts)
    if jobs:
        print(f"submitted {len(jobs)} job(s) to Slurm; waiting for them", flush=True)
        bad = [o for o in wait_jobs(jobs) if o.state != "done"]
        for o in bad:
            print(f"task {o.job_id} ({o.step} seed {o.seed}) {o.state}: {o.detail}; log: {o.log}", flush=True)


class Measurer:
    """GMACs of a spec as trained (proxy applied, sized to the data), for the ``flops`` rule and
    the plan; the data set is loaded once, on first use."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.data: Data | None = None
        self.cfg: RunConfig | None = None

    def loaded(self) -> tuple[RunConfig, Data]:
        if self.cfg is None or self.data is None:
            self.cfg = prepare(self.setup, {"start": self.setup.start.spec})
            self.data = load_data(self.cfg.data, data_key(self.cfg.data, self.cfg.recipe), loader_workers=0)
        return self.cfg, self.data

    def __call__(self, spec: ArchSpec) -> float:
        cfg, data = self.loaded()
        step = Step(name="measured", spec=spec, change="")
        return count(train_spec(step, cfg, data, cfg.recipe), cfg.recipe.resolution).gmacs

    def close(self) -> None:
        if self.data is not None:
            close_loaders(self.data)


def check_start(setup: Setup) -> None:
    """The start's own checks under the proxy (refused before anything is trained)."""
    prepare(setup, {spec_key(setup.start.spec): setup.start.spec})


def describe(setup: Setup, cfg: RunConfig) -> dict[str, Any]:
    """The setup in words, for the outputs."""
    return {"start": f"{setup.roadmap.name}:{setup.start.name}", "candidates": setup.candidates.source,
            "data": str(cfg.data), "recipe": cfg.recipe.name, "proxy": cfg.proxy.to_dict(),
            "seeds": list(setup.request.seeds), "global_batch": cfg.global_batch}
