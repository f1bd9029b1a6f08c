"""``explore --plan``: the worst-case job count of the rounds and a time estimate, from the
first round's candidates timed as ``train --plan`` times a run (``train/plan.py``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import torch

from ..roadmap import Step
from ..runfolder import is_finished, job_folder
from ..train.plan import duration, plan_lines, plan_steps
from .execute import Measurer, Setup, prepare, spec_key
from .search import Budget, Knob, Rule, round_candidates


def worst_case_jobs(knobs: Sequence[Knob], seeds: int, budget: Budget) -> tuple[int, int]:
    """(rounds, jobs) at most: every round trains every alternative of every knob left, the
    current spec's seeds once, and adopts the knob with the fewest alternatives (preconditions
    and reuse only lower it). The job budget caps it."""
    sizes = sorted(len(k.alternatives) for k in knobs)
    rounds = len(sizes) if budget.max_rounds is None else min(len(sizes), budget.max_rounds)
    jobs = seeds  # the start
    for r in range(rounds):
        jobs += sum(sizes[r:]) * seeds
    if budget.max_jobs is not None:
        jobs = min(jobs, budget.max_jobs)
    return rounds, jobs


def plan_explore(setup: Setup, rule: Rule, budget: Budget) -> list[str]:
    """The plan's lines: round 1's jobs as ``train --plan`` prints them, then the worst case."""
    measure = Measurer(setup)
    try:
        cfg, data = measure.loaded()
        tried, excluded = round_candidates(1, setup.start.spec, setup.candidates.knobs, rule, spec_key,
                                           measure if rule.name == "flops" else None)
        specs = {spec_key(setup.start.spec): setup.start.spec} | {t.key: t.spec for t in tried if t.key and t.spec}
        run = prepare(setup, specs)
        pending, every = [], []
        for k, spec in specs.items():
            step = Step(name=k, spec=spec, change=k)
            every.append((step, run.recipe, list(setup.request.seeds)))
            todo = [s for s in setup.request.seeds if not is_finished(job_folder(run.out, k, s))]
            if todo:
                pending.append((step, run.recipe, todo))
        names = {t.key: t.alternative for t in tried if t.key}
        names[spec_key(setup.start.spec)] = setup.start.name
        before = torch.get_num_threads()  # timed with the threads each worker will have
        workers = setup.execution.workers
        torch.set_num_threads(setup.execution.threads or max(1, (os.cpu_count() or 1) // workers))
        try:  # every round-1 spec is timed: later rounds train specs like them, stored or not
            timed = plan_steps(run, every, {}, lambda _r: data)
        finally:
            torch.set_num_threads(before)
        todo = {step.name: seeds for step, _, seeds in pending}
        plans = [dataclasses.replace(p, seeds=todo[p.step.name]) for p in timed if p.step.name in todo]
        lines, _ = plan_lines(run, plans, workers) if plans else ([], 0.0)
        lines = [_named(line, names) for line in lines]
        rounds, jobs = worst_case_jobs(setup.candidates.knobs, len(setup.request.seeds), budget)
        n_round1 = len(specs) * len(setup.request.seeds)
        done1 = n_round1 - sum(len(p[2]) for p in pending)
        per_job = sum(p.secs for p in timed) / max(1, len(timed))
        wall = per_job * max(0, jobs - done1) / max(1, workers)
        head = [f"explore plan: start {setup.start.name}, {sum(len(k.alternatives) for k in setup.candidates.knobs)} "
                f"candidate(s) in {len(setup.candidates.knobs)} knob(s), rule {rule.name}, "
                f"{len(setup.request.seeds)} seed(s); store {run.out}",
                f"round 1: {len(tried)} candidate(s) apply, {len(excluded)} do not; {n_round1} job(s), "
                f"{done1} already in the store"]
        tail = [f"worst case: {rounds} round(s), {jobs} job(s) (budget: rounds "
                f"{budget.max_rounds or 'none'}, jobs {budget.max_jobs or 'none'}), est. {duration(wall)} with "
                f"{workers} worker(s) at round 1's mean of {duration(per_job)} per job (data loading and "
                "other load on the machine not included)"]
        return head + lines + tail
    finally:
        measure.close()


def _named(line: str, names: dict[str, str]) -> str:
    for key, name in names.items():
        line = line.replace(key, f"{name} ({key})")
    return line
