"""``explore``: the paper's design process on a user's data. From a start spec, each round
trains every candidate change whose preconditions hold, adopts at most one by a named rule,
and repeats (``search.py``, pure); the jobs go through ``train``'s queue into a
content-addressed store (``execute.py``); the outputs are written by ``write.py``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..files import check_writable_dir
from ..paths import check_output_kind
from ..recipe import Recipe
from .candidates import CandidateSet, from_roadmap, load_candidates
from .execute import Measurer, Setup, Tally, check_start, describe, prepare, spec_key, train_specs
from .plan import plan_explore, worst_case_jobs
from .search import RULES, Alternative, Budget, Knob, Round, Rule, Scores, Search, Trial, explore
from .write import write_all

FLOPS_SLACK = 1.1
"""The ``flops`` rule's default budget: the start's GMACs x 1.1 (the paper went from 4.1 to 4.5)."""


@dataclass(frozen=True)
class Outcome:
    search: Search
    files: list[Path]
    trained: int
    reused: int
    wall_s: float


def start_gmacs(setup: Setup) -> float:
    """The start's GMACs as trained (proxy applied, sized to the data)."""
    m = Measurer(setup)
    try:
        return m(setup.start.spec)
    finally:
        m.close()


def recipe_label(setup: Setup) -> str:
    r = setup.request.recipe
    if isinstance(r, Recipe):
        return r.name
    return str(r) if r is not None else (setup.roadmap.recipe or "paper")


def check_outputs(setup: Setup, out: Path) -> None:
    """``--out`` and ``--store`` refused before anything is trained: a file, a read-only place,
    one folder for both, or a folder another command wrote (its ``index.html`` would be replaced)."""
    check_writable_dir(out)
    check_writable_dir(setup.store)
    if Path(out).resolve() == Path(setup.store).resolve():
        raise ConfigError(f"--out {out} and --store {setup.store} are one folder: the store is shared by "
                          "explores, the output is this explore's; give two folders")
    check_output_kind(out, "explore output")
    check_output_kind(setup.store, "explore store", "--store")


def run_explore(setup: Setup, rule: Rule, budget: Budget, out: Path,
                say: Callable[[str], None] = print) -> Outcome:
    """The whole explore; rerunning it reuses every finished job (a finished explore trains nothing)."""
    t0 = time.perf_counter()
    check_outputs(setup, out)
    check_start(setup)
    cfg = prepare(setup, {spec_key(setup.start.spec): setup.start.spec})
    tally = Tally()
    measure = Measurer(setup) if rule.name == "flops" else None
    info = describe(setup, cfg) | {"rule": rule.name + (f" (max {rule.max_gmacs:.4g} GMACs)" if rule.max_gmacs else ""),
                                   "budget": f"rounds {budget.max_rounds or 'none'}, jobs {budget.max_jobs or 'none'}",
                                   "store": cfg.out.name}

    def write(search: Search) -> list[Path]:
        cost = {"jobs used": search.jobs, "trained by this invocation": len(tally.trained),
                "reused from the store": len(tally.reused), "wall time": f"{time.perf_counter() - t0:.0f} s"}
        return write_all(out, search, roadmap=setup.roadmap, start=setup.start, recipe=recipe_label(setup),
                         imports=setup.imports, rule=rule.name, setup=info, cost=cost)

    try:
        search = explore(setup.start.spec, setup.candidates.knobs, rule=rule, seeds=setup.request.seeds,
                         score=lambda specs: train_specs(setup, specs, tally), key=spec_key, budget=budget,
                         measure=measure, say=say, after_round=write)
    finally:
        if measure is not None:
            measure.close()
    files = write(search)
    return Outcome(search, files, len(tally.trained), len(tally.reused), time.perf_counter() - t0)


__all__ = ["FLOPS_SLACK", "RULES", "Alternative", "Budget", "CandidateSet", "Knob", "Outcome", "Round", "Rule",
           "Scores", "Search", "Setup", "Trial", "check_outputs", "explore", "from_roadmap", "load_candidates",
           "plan_explore", "run_explore", "start_gmacs", "worst_case_jobs"]
