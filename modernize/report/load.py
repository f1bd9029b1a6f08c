"""Reading a RUN_DIR for a report: run.json, the roadmap the run folder keeps, every job's
result and log, an optional bench table; and the check that every job is a result of this run
(the identity ``train`` checks before reusing a job, ``runfolder.stale_reason``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..csvtable import BENCH_RULES, read_checked
from ..errors import ConfigError
from ..paths import default_out
from ..roadmap import Roadmap, load_roadmap
from ..runfolder import (
    RUN_META,
    JobResult,
    RunMeta,
    job_folder,
    load_result,
    read_log,
    read_run_meta,
    short,
    source_roadmap,
    stale_reason,
)


@dataclass(frozen=True)
class Run:
    """A RUN_DIR as read from disk: its metadata, roadmap, per-seed results and logs."""

    run_dir: Path
    meta: RunMeta
    roadmap: Roadmap
    seeds: tuple[int, ...]
    results: dict[str, dict[int, JobResult]]
    """step -> seed -> result.json (seeds without a result.json, or whose job is stale, are absent)."""
    logs: dict[str, dict[int, pd.DataFrame]] = field(default_factory=dict)
    bench: pd.DataFrame | None = None
    stale: dict[str, dict[int, str]] = field(default_factory=dict)
    """step -> seed -> why the job folder there is not a result of this run (``runfolder.stale_reason``)."""


def _roadmap_of(run_dir: Path, meta: RunMeta) -> Roadmap:
    """The roadmap the run folder keeps (``.source/``: the same wherever the folder is read); for
    a run folder written before it kept one, the file run.json names (as given, or relative to
    the run folder), else the built-in of that name."""
    kept = source_roadmap(run_dir, meta)
    if kept is not None:
        return load_roadmap(kept)
    path, name = meta["roadmap"]["path"], meta["roadmap"]["name"]
    for candidate in (Path(path), run_dir / path):
        if path and candidate.is_file():
            return load_roadmap(candidate)
    try:
        return load_roadmap(name)
    except ConfigError:
        pass
    raise ConfigError(f"{run_dir / RUN_META}: the roadmap file ({path!r}) is missing and its name "
                      f"({name!r}) is not a built-in roadmap")


def stale_jobs(run_dir: Path, meta: RunMeta, roadmap: Roadmap, seeds: list[int]) -> dict[str, dict[int, str]]:
    """step -> seed -> why its job is not a result of this run: the check ``train`` makes before
    reusing a job (``runfolder.stale_reason``), against run.json and the roadmap the folder keeps."""
    out: dict[str, dict[int, str]] = {}
    for step in roadmap:
        for seed in seeds:
            why = stale_reason(run_dir, meta, step.name, step.spec.to_dict(), seed, step.recipe)
            if why:
                out.setdefault(step.name, {})[seed] = why
    return out


def _refuse_stale(run_dir: Path, stale: dict[str, dict[int, str]]) -> None:
    jobs = [(job_folder(run_dir, step, seed), why) for step, by in stale.items() for seed, why in by.items()]
    if not jobs:
        return
    folder, why = jobs[0]
    more = f" (and {len(jobs) - 1} more job(s))" if len(jobs) > 1 else ""
    raise ConfigError(f"{folder}: not a result of this run{more}: {short(why, 300)} (checked against "
                      f"{run_dir / RUN_META} and the roadmap file the run keeps); restore what changed, or retrain "
                      "it with `train ... --force` (the old job is kept under RUN_DIR/.replaced/)")


def _find_bench(run_dir: Path, out: Path, roadmap_name: str) -> pd.DataFrame | None:
    for path in (run_dir / "bench.csv", out / "bench.csv", default_out(roadmap_name) / "bench.csv"):
        if path.is_file():
            return read_checked(path, "bench table", BENCH_RULES)  # every cell checked: one line naming the row
    return None


def load_run(run_dir: Path, out: Path | None = None, *, keep_stale: bool = False) -> Run:
    """Read and validate a RUN_DIR (nothing is written). A job that is not a result of this run
    (``stale_jobs``) is refused, one line naming it and why; with ``keep_stale`` it is left out
    of ``results`` and ``logs`` and listed in ``stale`` instead (never averaged in)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"RUN_DIR '{run_dir}': no such folder")
    meta = read_run_meta(run_dir)
    seeds = meta["seeds"]
    roadmap = _roadmap_of(run_dir, meta)
    stale = stale_jobs(run_dir, meta, roadmap, seeds)
    if not keep_stale:
        _refuse_stale(run_dir, stale)
    results: dict[str, dict[int, JobResult]] = {}
    logs: dict[str, dict[int, pd.DataFrame]] = {}
    for step in roadmap:
        results[step.name], logs[step.name] = {}, {}
        for seed in seeds:
            if seed in stale.get(step.name, {}):
                continue
            folder = job_folder(run_dir, step.name, seed)
            result = load_result(folder)
            if result is not None:
                results[step.name][seed] = result
            log = read_log(folder)
            if log is not None:
                logs[step.name][seed] = log
    out = Path(out) if out is not None else run_dir / "report"
    return Run(run_dir=run_dir, meta=meta, roadmap=roadmap, seeds=tuple(seeds), results=results, logs=logs,
               bench=_find_bench(run_dir, out, roadmap.name), stale=stale)
