"""The run folder, defined once: the files the training engine (``modernize.train``) writes
and the report (``modernize.report``) reads, their fields, and one writer and one reader each.

Layout of a run directory::

    RUN_DIR/run.json                         RunMeta: resolved run config, per-step identity of its jobs
    RUN_DIR/.source/                         copy of the roadmap file, its user modules (and the local
                                             modules they import), recipe files, paper table
    RUN_DIR/<step>/seed<k>/config.json       JobConfig: resolved spec, recipe, data, proxy, fingerprint
    RUN_DIR/<step>/seed<k>/log.csv           LogRow per epoch (columns: LOG_COLUMNS)
    RUN_DIR/<step>/seed<k>/result.json       JobResult: status, top1/top5 (last epoch), best_top1, ...
    RUN_DIR/<step>/seed<k>/last.pt           checkpoint (``modernize.train.checkpoint``)
    RUN_DIR/<step>/seed<k>/prev.pt           the checkpoint before last.pt (until the job is done)
    RUN_DIR/.replaced/<time>/<step>/seed<k>/ jobs moved aside by --force (nothing is deleted)

This module sits below both the engine and the report (it imports neither, nor torch or
pandas at import time), so the report reads a run folder without loading the engine. A writer
refuses a record whose keys differ from its schema: a new field is added here, once. A reader
checks the type of every key the schema names (``_check_types``; keys of older versions are
kept), so an edited file is one ``ConfigError`` naming the file and the key.

One identity of a result: a job belongs to its run when its ``config.json`` records the
fingerprint parts run.json's ``identity`` gives its step, with the seed of its folder
(``job_mismatch``). The engine applies it before reusing a job; the report and ``compare``
apply it (``stale_reason``) before showing one. Older run folders are read as they are: without
``identity`` the report checks what run.json determines (spec, proxy, data, recipe) and the
seed; without ``.source/`` the roadmap is read from the path run.json names.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypedDict

from ._typing import check_fields
from .errors import ConfigError
from .files import atomic_write_json, atomic_write_text, read_json_object
from .proxy import ProxyScale
from .recipe import NOT_IN_FINGERPRINT

RUN_META, JOB_CONFIG, RESULT, LOG = "run.json", "config.json", "result.json", "log.csv"
SOURCE = ".source"
"""The run folder's copy of the files it was made from (``write_sources``); a step name never
starts with a dot, so no step's folder can be it."""
STATUSES = ("done", "failed", "running")
FINISHED = ("done", "failed")
"""A job with one of these statuses is never trained again."""
class Named(TypedDict):
    name: str
    path: str


class NamedRecipe(TypedDict):
    name: str
    values: dict[str, Any]


class RunProvenance(TypedDict, total=False):
    """The keys of ``run.json`` that older run folders lack (readers use ``.get``)."""

    code: dict[str, Any]
    """``{"package", "commit", "dirty"}`` of the invocation that last wrote run.json
    (``modernize.provenance``)."""
    machine: dict[str, Any]
    """``{"cpu", "cores", "platform", "python", "gpu"}`` of that invocation."""
    identity: dict[str, dict[str, Any]]
    """Per step of the roadmap: the fingerprint parts of its jobs without the seed (``job_identity``)."""
    source: dict[str, Any]
    """``{"roadmap": file name under .source/, "files": {path under .source/: hash}}``."""


class RunMeta(RunProvenance):
    """``run.json``: the run-level record (jobs are reused by their own fingerprints, not by this)."""

    roadmap: Named
    recipe: NamedRecipe
    step_recipes: dict[str, NamedRecipe]
    data: str
    proxy: dict[str, Any]
    seeds: list[int]
    steps: list[str]
    device: str
    world_size: int
    per_process_batch: int
    global_batch: int
    lr: float
    torch: str
    compared: dict[str, Any]
    """What must match for two invocations to share the run folder (``RunConfig.compared``)."""
    config_hash: str


class JobConfig(TypedDict):
    """``<step>/seed<k>/config.json``: how one job is trained. Jobs trained before fingerprints
    lack the last three keys (``modernize.train.fingerprint`` still reuses them)."""

    step: str
    seed: int
    change: str
    paper_row: str | None
    adopted: bool
    parent: str | None
    spec: dict[str, Any]
    paper_spec: dict[str, Any]
    recipe: dict[str, Any]
    data: str
    proxy: dict[str, Any]
    device: str
    world_size: int
    per_process_batch: int
    global_batch: int
    lr: float
    resolution: int
    fingerprint: str
    fingerprint_parts: dict[str, Any]
    torch: str


class JobProvenance(TypedDict, total=False):
    """The keys of ``result.json`` that older jobs lack: where the job was trained, written by
    the process that trains it (a later command that reuses the job does not rewrite them)."""

    code: dict[str, Any]
    """``{"package", "commit", "dirty"}`` (``modernize.provenance.code_version``)."""
    machine: dict[str, Any]
    """``{"cpu", "cores", "platform", "python", "gpu"}`` (``modernize.provenance.machine``)."""


class JobResult(JobProvenance):
    """``<step>/seed<k>/result.json``, rewritten after every epoch."""

    step: str
    seed: int
    recipe: str
    resolution: int
    gmacs: float
    params_m: float
    epochs: int
    fingerprint: str
    status: str
    """One of ``STATUSES``."""
    top1: float | None
    top5: float | None
    best_top1: float | None
    epochs_done: int
    wall_s: float
    failed_epoch: int | None
    reason: str | None


class LogRow(TypedDict):
    """One epoch of ``log.csv``."""

    epoch: int
    train_loss: float
    val_loss: float
    top1: float
    top5: float
    lr: float
    img_per_s: float
    seconds: float


LOG_COLUMNS = list(LogRow.__annotations__)


def job_folder(run_dir: Path, step: str, seed: int) -> Path:
    return Path(run_dir) / step / f"seed{seed}"


def _exact(record: Any, schema: type, what: str) -> None:
    """Every required key and no unknown one (a ``total=False`` key may be left out)."""
    required = schema.__required_keys__  # type: ignore[attr-defined]
    keys = required | schema.__optional_keys__  # type: ignore[attr-defined]
    if not required <= set(record) <= keys:
        raise ValueError(f"{what}: keys differ from the schema (missing {sorted(keys - set(record))}, "
                         f"unknown {sorted(set(record) - keys)})")


# --- writers -----------------------------------------------------------------------------------

def write_run_meta(run_dir: Path, meta: RunMeta) -> None:
    _exact(meta, RunMeta, RUN_META)
    atomic_write_json(Path(run_dir) / RUN_META, meta)


def write_job_config(job_dir: Path, config: JobConfig) -> None:
    _exact(config, JobConfig, JOB_CONFIG)
    atomic_write_json(Path(job_dir) / JOB_CONFIG, config)


def write_result(job_dir: Path, result: JobResult) -> None:
    _exact(result, JobResult, RESULT)
    atomic_write_json(Path(job_dir) / RESULT, result)


def write_log(job_dir: Path, rows: list[LogRow]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(job_dir) / LOG, buf.getvalue())


# --- readers -----------------------------------------------------------------------------------

def _check_types(record: dict[str, Any], schema: type, path: Path) -> None:
    """Each key of ``schema`` present in ``record`` has its type (no conversion: a bool is not
    an int, a string not a number); keys the schema does not name are left alone (older versions)."""
    check_fields(record, schema, lambda msg: ConfigError(f"{path}: {msg}"), unknown=True)
    if schema is JobResult:
        _check_ranges(record, path)


PERCENT_KEYS = ("top1", "top5", "best_top1")
"""A job's accuracies, in percent: a finite one outside 0..100 is not a result (an edited file)."""


def _check_ranges(result: dict[str, Any], path: Path) -> None:
    """Accuracies in 0..100 and costs >= 0 (a non-finite value stays: the report shows none)."""
    for key in (*PERCENT_KEYS, "gmacs", "params_m"):
        value = result.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            low, high = (0.0, 100.0) if key in PERCENT_KEYS else (0.0, math.inf)
            if not low <= value <= high:
                raise ConfigError(f"{path}: '{key}' = {value!r} is outside {low:g}..{high:g}; not a result of "
                                  "a training (edited?): retrain it with `train ... --force`")


def read_run_meta(run_dir: Path) -> RunMeta:
    """``run.json``, checked: an object with ``roadmap`` ``{"name", "path"}``, ``recipe``
    ``{"name", "values"}`` and a non-empty list of integer ``seeds``; anything else is a
    ``ConfigError`` naming the file."""
    path = Path(run_dir) / RUN_META
    try:
        meta = read_json_object(path, RUN_META)
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing {RUN_META} (is this a folder written by `train`?)") from None
    seeds = meta.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise ConfigError(f"{path}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    for key, second in (("roadmap", "path"), ("recipe", "values")):
        value = meta.get(key)
        if not (isinstance(value, dict) and isinstance(value.get("name"), str) and second in value):
            raise ConfigError(f"{path}: '{key}' must be {{\"name\": ..., \"{second}\": ...}}, got {value!r}"[:300])
    _check_types(meta, RunMeta, path)
    if isinstance(meta.get("proxy"), dict):  # older run.json files add prose keys ("note", "low_res")
        known = {f.name for f in fields(ProxyScale)}
        meta["proxy"] = {k: v for k, v in meta["proxy"].items() if k in known}
    return meta  # type: ignore[return-value]


def read_job_config(job_dir: Path) -> dict[str, Any]:
    """A job's ``config.json`` as stored (older jobs lack the fingerprint keys);
    ``FileNotFoundError`` when missing, ``ConfigError`` when unreadable."""
    path = Path(job_dir) / JOB_CONFIG
    config = read_json_object(path, "job config")
    _check_types(config, JobConfig, path)
    return config


def read_result(job_dir: Path) -> JobResult | None:
    """The engine's view: a job's ``result.json``, or None when missing or unreadable (then
    the job is not finished and is trained again)."""
    path = Path(job_dir) / RESULT
    try:
        obj = read_json_object(path, RESULT)
        _check_types(obj, JobResult, path)
    except (FileNotFoundError, ConfigError):
        return None
    return obj  # type: ignore[return-value]


def load_result(job_dir: Path) -> JobResult | None:
    """The report's view: None when missing; unreadable, or a ``status`` not in ``STATUSES``,
    is a ``ConfigError`` naming the file."""
    path = Path(job_dir) / RESULT
    if not path.is_file():
        return None
    result = read_json_object(path, RESULT)
    if result.get("status") not in STATUSES:
        raise ConfigError(f"{path}: 'status' must be done, failed or running")
    _check_types(result, JobResult, path)
    return result  # type: ignore[return-value]


def is_finished(job_dir: Path) -> bool:
    """Done or failed: never trained again."""
    return (read_result(job_dir) or {}).get("status") in FINISHED


def read_log(job_dir: Path) -> Any:
    """``log.csv`` as a pandas DataFrame, or None when missing, torn or without ``epoch`` and
    ``top1`` (a log is only drawn; a torn one must not block the report's table)."""
    import pandas as pd

    path = Path(job_dir) / LOG
    if not path.is_file():
        return None
    try:
        log = pd.read_csv(path)
    except (OSError, ValueError):  # ParserError, EmptyDataError, UnicodeDecodeError are ValueErrors
        return None
    return log if {"epoch", "top1"} <= set(log.columns) else None


def differing(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key (old -> new)`` for every differing leaf of two nested dicts."""
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differing(a, b, f"{prefix}{k}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            out.append(f"{prefix}{k} ({short(repr(a), 40)} -> {short(repr(b), 40)})")
    return out


def fingerprint_fields(*, step_spec: dict[str, Any], proxy: dict[str, Any], recipe: dict[str, Any], data: str,
                       seed: int | None, global_batch: int | None, torch_version: str | None) -> dict[str, Any]:
    """A job's fingerprint parts as stored in its config.json (``fingerprint_parts``): one
    definition for the engine, which decides reuse by them, and the report, which re-checks a
    run's jobs against its run.json. ``recipe``: the resolved recipe values (those in
    ``NOT_IN_FINGERPRINT`` are left out); ``torch_version`` is kept to major.minor."""
    torch_mm = None if torch_version is None else ".".join(torch_version.split("+")[0].split(".")[:2])
    return json.loads(json.dumps({
        "step_spec": step_spec, "proxy": proxy,
        "recipe": {k: v for k, v in recipe.items() if k not in NOT_IN_FINGERPRINT}, "data": data,
        "seed": seed, "global_batch": global_batch, "torch": torch_mm}, sort_keys=True, default=str))


def job_identity(*, step_spec: dict[str, Any], proxy: dict[str, Any], recipe: dict[str, Any], data: str,
                 seed: int | None, global_batch: int | None, torch_version: str | None,
                 kinds: dict[str, str]) -> dict[str, Any]:
    """The identity of a job's result (its fingerprint parts): ``fingerprint_fields``, and for
    kinds a user module registered, ``kinds`` = ``{"family:name": hash of its code}`` (left out
    when the spec uses none: the paper's steps keep the fingerprints they always had)."""
    parts = fingerprint_fields(step_spec=step_spec, proxy=proxy, recipe=recipe, data=data, seed=seed,
                               global_batch=global_batch, torch_version=torch_version)
    if kinds:
        parts["kinds"] = dict(sorted(kinds.items()))
    return parts


def _pre_fingerprint_parts(old: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint parts of a job trained before fingerprints, from its config.json (such
    job folders exist in real runs, e.g. the proxy study's)."""
    recipe = old.get("recipe") if isinstance(old.get("recipe"), dict) else {}
    return json.loads(json.dumps({
        "step_spec": old.get("paper_spec"), "proxy": old.get("proxy"),
        "recipe": {k: v for k, v in recipe.items() if k not in NOT_IN_FINGERPRINT},
        "data": old.get("data"), "seed": old.get("seed"), "global_batch": old.get("global_batch")},
        sort_keys=True, default=str))


def job_mismatch(job_dir: Path, parts: dict[str, Any], only: tuple[str, ...] | None = None) -> str | None:
    """None when the job folder is empty or was trained with these fingerprint parts; else what
    differs (one line). The one check of a result's identity: the engine applies it before
    reusing a job, the report before showing one. ``only``: compare just these parts (a run
    folder whose run.json predates ``identity`` determines no more)."""
    from .recipe import config_hash

    if not any((job_dir / f).exists() for f in (JOB_CONFIG, RESULT, "last.pt", "prev.pt")):
        return None
    try:
        old = read_job_config(job_dir)
    except FileNotFoundError:
        return "config.json is missing (cannot tell how it was trained)"
    except ConfigError as exc:
        return f"config.json is unreadable ({short(str(exc).split(': ', 1)[-1], 120)})"
    if only is None and old.get("fingerprint") == config_hash(parts):
        return None
    recorded = old["fingerprint_parts"] if isinstance(old.get("fingerprint_parts"), dict) else None
    if recorded is None:  # trained before fingerprints: compare what its config.json recorded
        recorded, only = _pre_fingerprint_parts(old), tuple(k for k in (only or parts) if k != "torch")
    if only is not None:
        recorded, parts = {k: recorded.get(k) for k in only}, {k: parts.get(k) for k in only}
    diff = differing(recorded, parts)
    if only is not None and not diff:
        return None
    return short(", ".join(diff), 240) or "fingerprint"


def expected_parts(meta: RunMeta, step: str, step_spec: dict[str, Any], seed: int, step_recipe: str | None = None
                   ) -> tuple[dict[str, Any], tuple[str, ...] | None]:
    """What run.json says a job of ``step`` with ``seed`` was trained with, and which parts it
    determines (None: all of them). The step's spec comes from the roadmap the run folder keeps;
    ``step_recipe``: the step's recipe override (run.json's ``step_recipes`` key)."""
    recipes = {k: v["values"] for k, v in (meta.get("step_recipes") or {}).items()}
    proxy = meta.get("proxy") or {}
    values = recipes.get(step_recipe or "", meta["recipe"]["values"])
    parts = fingerprint_fields(step_spec=step_spec, proxy=proxy, recipe=values, data=meta["data"], seed=seed,
                               global_batch=None, torch_version=None)
    identity = (meta.get("identity") or {}).get(step)
    if not isinstance(identity, dict):  # run.json written before it recorded the identity
        return parts, ("step_spec", "proxy", "data", "recipe", "seed")
    # what run.json's other keys record stays the authority for them: an edit of either is seen
    return parts | {k: v for k, v in identity.items() if k in ("global_batch", "torch", "kinds")}, None


def stale_reason(run_dir: Path, meta: RunMeta, step: str, step_spec: dict[str, Any], seed: int,
                 step_recipe: str | None = None) -> str | None:
    """Why the job ``RUN_DIR/<step>/seed<seed>`` is not a result of this run (one line), or None
    when it is (or there is no job). Its result.json must name its step and folder's seed, and
    its config.json the fingerprint parts run.json gives its step (``job_mismatch``). A job
    without config.json (written by hand) is checked by its result.json alone."""
    folder = job_folder(run_dir, step, seed)
    try:
        result = read_json_object(folder / RESULT, RESULT)
    except (FileNotFoundError, ConfigError):
        result = {}  # missing, or shown as unreadable by the report's own reader
    for key, want in (("step", step), ("seed", seed)):
        if key in result and result[key] != want:
            return f"result.json records {key} {result[key]!r}, not {want!r} (a job folder copied or moved in)"
    if not (folder / JOB_CONFIG).exists():
        return None
    parts, only = expected_parts(meta, step, step_spec, seed, step_recipe)
    why = job_mismatch(folder, parts, only)
    if why:
        return f"trained otherwise than this run records (trained -> now: {why})"
    try:
        config = read_job_config(folder)
    except (FileNotFoundError, ConfigError):
        return None
    if "fingerprint" in result and "fingerprint" in config and result["fingerprint"] != config["fingerprint"]:
        return "result.json and config.json record different fingerprints (files of two jobs mixed)"
    return None


def refuse_stale(run_dir: Path, jobs: Iterable[tuple[str, dict[str, Any], int]]) -> None:
    """A ``ConfigError`` naming the first of ``jobs`` (step, spec as a dict, seed) whose folder
    holds no result of the run (``stale_reason``: a job folder copied or moved in, trained
    otherwise), so that a reader that reuses finished jobs never takes one for another."""
    if not (Path(run_dir) / RUN_META).is_file():
        return
    meta = read_run_meta(run_dir)
    for step, spec, seed in jobs:
        why = stale_reason(run_dir, meta, step, spec, seed)
        if why:
            raise ConfigError(f"{job_folder(run_dir, step, seed)}: not a result of this run: {short(why)}; "
                              "remove that folder to train the job again")


def write_sources(run_dir: Path, files: dict[str, Path]) -> dict[str, str]:
    """Replace ``RUN_DIR/.source/`` by a copy of ``files`` (``{path under .source/: file}``); returns
    ``{path: hash}``. Written beside and swapped in, so a reader sees the old copy or the new one."""
    from .usercode import file_hash

    run_dir = Path(run_dir)
    final = run_dir / SOURCE
    tmp, old = run_dir / f"{SOURCE}.{os.getpid()}.tmp", run_dir / f"{SOURCE}.{os.getpid()}.old"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        for rel, src in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        tmp.mkdir(exist_ok=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"{final}: cannot write the run's copy of its sources: {exc.strerror or exc}") from None
    shutil.rmtree(old, ignore_errors=True)
    return {rel: file_hash(final / rel) for rel in sorted(files)}


def source_roadmap(run_dir: Path, meta: RunMeta) -> Path | None:
    """The roadmap file the run folder keeps (``.source/``), or None (a run folder written before
    it kept one, or a copy without it)."""
    name = (meta.get("source") or {}).get("roadmap")
    if not isinstance(name, str) or not name or Path(name).name != name:
        return None
    path = Path(run_dir) / SOURCE / name
    return path if path.is_file() else None


def short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


__all__ = ["FINISHED", "JOB_CONFIG", "LOG", "LOG_COLUMNS", "NOT_IN_FINGERPRINT", "RESULT", "RUN_META", "SOURCE",
           "STATUSES", "JobConfig", "JobProvenance", "JobResult", "LogRow", "Named", "NamedRecipe", "RunMeta",
           "RunProvenance", "differing", "expected_parts", "fingerprint_fields", "is_finished", "job_folder",
           "job_identity", "job_mismatch", "load_result", "read_job_config", "read_log", "read_result",
           "read_run_meta", "refuse_stale", "short", "source_roadmap", "stale_reason", "write_job_config", "write_log",
           "write_result", "write_run_meta", "write_sources"]
