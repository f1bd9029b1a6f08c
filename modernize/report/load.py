"""Reading a RUN_DIR for a report: run.json, the roadmap it names, every job's result and
log, an optional bench table; and the check that every job is the one run.json describes."""

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
    differing,
    fingerprint_fields,
    job_folder,
    load_result,
    read_job_config,
    read_log,
    read_run_meta,
    short,
)

CHECKED = ("step_spec", "proxy", "data", "recipe")
"""The fingerprint parts run.json determines for every job (the seed, global batch and torch
version are the engine's to check when it reuses a job)."""


@dataclass(frozen=True)
class Run:
    """A RUN_DIR as read from disk: its metadata, roadmap, per-seed results and logs."""

    run_dir: Path
    meta: RunMeta
    roadmap: Roadmap
    seeds: tuple[int, ...]
    results: dict[str, dict[int, JobResult]]
    """step -> seed -> result.json (seeds without a result.json are absent)."""
    logs: dict[str, dict[int, pd.DataFrame]] = field(default_factory=dict)
    bench: pd.DataFrame | None = None


def _roadmap_of(run_dir: Path, meta: RunMeta) -> Roadmap:
    """The run's roadmap file, else the built-in of that name (a run folder moved to another machine)."""
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


def _check_jobs(run_dir: Path, meta: RunMeta, roadmap: Roadmap, seeds: list[int]) -> None:
    """Every job that records its fingerprint must be the job this report describes: the
    roadmap's step as the file defines it now, the recipe, proxy and data of run.json. A roadmap
    edited after training, or a job left from another configuration, would otherwise be shown
    under the wrong labels. (Jobs trained before fingerprints are taken as they are.)"""
    recipes = {k: v["values"] for k, v in (meta.get("step_recipes") or {}).items()}
    for step in roadmap:
        values = recipes.get(step.recipe or "", meta["recipe"]["values"])
        fields = fingerprint_fields(step_spec=step.spec.to_dict(), proxy=meta["proxy"], recipe=values,
                                    data=meta["data"], seed=None, global_batch=None, torch_version=None)
        expected = {k: fields[k] for k in CHECKED}
        for seed in seeds:
            folder = job_folder(run_dir, step.name, seed)
            try:
                parts = read_job_config(folder).get("fingerprint_parts")
            except (FileNotFoundError, ConfigError):
                continue  # no job, or one the table already shows as unreadable/missing
            if not isinstance(parts, dict):
                continue
            if isinstance(parts.get("proxy"), dict):  # run.json's proxy adds notes of its own
                expected["proxy"] = {k: meta["proxy"].get(k) for k in parts["proxy"]}
            diff = differing({k: parts.get(k) for k in expected}, expected)
            if not diff:
                continue
            source = (f"roadmap file {meta['roadmap']['path'] or roadmap.name} now defines step '{step.name}'"
                      if any(d.startswith("step_spec.") or d.startswith("step_spec ") for d in diff)
                      else f"{run_dir / RUN_META} records")
            raise ConfigError(f"{folder}: trained otherwise than {source} (trained -> now: "
                              f"{short(', '.join(diff), 200)}); restore what changed, or retrain it with "
                              "`train ... --force` (the old job is kept under RUN_DIR/.replaced/)")


def _find_bench(run_dir: Path, out: Path, roadmap_name: str) -> pd.DataFrame | None:
    for path in (run_dir / "bench.csv", out / "bench.csv", default_out(roadmap_name) / "bench.csv"):
        if path.is_file():
            return read_checked(path, "bench table", BENCH_RULES)  # every cell checked: one line naming the row
    return None


def load_run(run_dir: Path, out: Path | None = None) -> Run:
    """Read and validate a RUN_DIR (nothing is written)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"RUN_DIR '{run_dir}': no such folder")
    meta = read_run_meta(run_dir)
    seeds = meta["seeds"]
    roadmap = _roadmap_of(run_dir, meta)
    _check_jobs(run_dir, meta, roadmap, seeds)
    results: dict[str, dict[int, JobResult]] = {}
    logs: dict[str, dict[int, pd.DataFrame]] = {}
    for step in roadmap:
        results[step.name], logs[step.name] = {}, {}
        for seed in seeds:
            folder = job_folder(run_dir, step.name, seed)
            result = load_result(folder)
            if result is not None:
                results[step.name][seed] = result
            log = read_log(folder)
            if log is not None:
                logs[step.name][seed] = log
    out = Path(out) if out is not None else run_dir / "report"
    return Run(run_dir=run_dir, meta=meta, roadmap=roadmap, seeds=tuple(seeds), results=results, logs=logs,
               bench=_find_bench(run_dir, out, roadmap.name))
