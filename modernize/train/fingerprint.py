"""What a job and a run were trained with. A job is reused (skipped or resumed) only when its
fingerprint (``fingerprint_parts``) matches this command's (``runfolder.job_mismatch``, the
check the report applies too); ``run.json`` is the run-level record, checked under a file
lock, not the authority. Beside it the run folder keeps a copy of its sources (``.source/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..kinds import get_kind
from ..provenance import code_version, machine
from ..recipe import Recipe, config_hash, recipe_files
from ..roadmap import Step
from ..runfolder import (
    NOT_IN_FINGERPRINT,
    RUN_META,
    NamedRecipe,
    RunMeta,
    differing,
    job_identity,
    job_mismatch,
    read_run_meta,
    short,
    write_run_meta,
    write_sources,
)
from ..spec import ArchSpec
from ..usercode import local_modules
from .batches import batching
from .config import RunConfig


def fingerprint_parts(cfg: RunConfig, step: Step, recipe: Recipe, seed: int) -> dict[str, Any]:
    """Everything that determines a job's result (``runfolder.job_identity``): the step's paper
    spec (the proxy is applied to it), the resolved recipe values, the data spec, the seed, the
    effective global batch (batch x processes x accumulation: a run may resume on another
    process count that keeps it), the torch version (major.minor) and, for kinds a user module
    registered, the hash of their code (``user_kind_hashes``). Not included: the device and the
    number of threads (same numbers up to floating-point order), the contents of a data folder
    (only its spec string)."""
    return job_identity(step_spec=step.spec.to_dict(), proxy=cfg.proxy.to_dict(), recipe=recipe.to_dict(),
                        data=str(cfg.data), seed=seed, global_batch=batching(recipe, cfg.dist.world).global_batch,
                        torch_version=torch.__version__, kinds=user_kind_hashes(step.spec))


def user_kind_hashes(spec: ArchSpec) -> dict[str, str]:
    """``{"family:name": hash}`` of the kinds a spec uses that a user module registered: the
    hash of the module that defines the kind and of the local modules it imports, so an edited
    module (or helper) is not silently reused, and an edit elsewhere does not touch this spec."""
    used = [("act", spec.act), ("norm", spec.norm), *(("component", c.kind) for c in spec.components)]
    kinds = [get_kind(family, name) for family, name in used]
    return {f"{k.family}:{k.name}": k.source_hash for k in kinds if not k.builtin}


def run_identity(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Per step of the roadmap: the fingerprint parts of its jobs without the seed (run.json's
    ``identity``, which the report checks every job against)."""
    out = {}
    for step in cfg.roadmap:
        try:
            parts = fingerprint_parts(cfg, step, cfg.recipe_of(step), 0)
        except ConfigError:  # a step outside this command that this process count cannot batch
            continue
        parts.pop("seed")
        out[step.name] = parts
    return out


def source_files(cfg: RunConfig) -> tuple[str, dict[str, Path]]:
    """What the run folder keeps a copy of, as ``{path under .source/: file}``: the roadmap file
    (its own name), the user modules it imports and the local modules they import (at their
    module paths, so the copy imports them as the roadmap does), its paper table when that is a
    file beside it, and the recipe files with their bases (under ``recipes/``)."""
    path = cfg.roadmap.path.resolve()
    files: dict[str, Path] = {path.name: path}
    for name, file in local_modules([m for m, _ in cfg.roadmap.imports]).items():
        rel = Path(*name.split("."))
        files[str(rel / "__init__.py" if file.name == "__init__.py" else rel.with_suffix(".py"))] = file
    paper = cfg.roadmap.paper_path
    if paper is not None and paper.resolve().is_relative_to(path.parent):
        files[str(paper.resolve().relative_to(path.parent))] = paper.resolve()
    recipes = [cfg.recipe_source] if cfg.recipe_source is not None else []
    for named in [*recipes, *dict.fromkeys(s.recipe for s in cfg.roadmap if s.recipe)]:
        try:
            chain = recipe_files(named)
        except ConfigError:  # a step override the run substitutes
            continue
        for file in chain:
            files.setdefault(f"recipes/{file.name}", file)
    return path.name, files


def record_run_meta(cfg: RunConfig) -> None:
    """Create run.json, or check that the existing one describes the same run (under a file
    lock: several processes may start on one run folder at once)."""
    from filelock import FileLock

    with FileLock(str(cfg.out / ".run.json.lock")):
        _record_run_meta_locked(cfg)


def _record_run_meta_locked(cfg: RunConfig) -> None:
    path = cfg.out / RUN_META
    compared = cfg.compared()
    digest = config_hash(compared)
    seeds, steps = list(cfg.seeds), [s.name for s in cfg.steps]
    if path.is_file():
        try:
            old: dict[str, Any] = dict(read_run_meta(cfg.out))
        except ConfigError as exc:
            raise ConfigError(f"{exc}; remove it or pick another --out") from None
        before = old.get("compared") if isinstance(old.get("compared"), dict) else {}
        diff = differing(_identity(before), _identity(compared))
        if diff and not cfg.force:
            raise ConfigError(f"{path}: this run directory holds a different configuration "
                              f"(differs in: {short(', '.join(diff))}); use another --out, "
                              "or --force to retrain what differs")
        if not diff:
            seeds = sorted(set(old.get("seeds", [])) | set(seeds))
            steps = [n for n in cfg.roadmap.names if n in set(old.get("steps", [])) | set(steps)]
    roadmap_file, files = source_files(cfg)
    hashes = write_sources(cfg.out, files)
    write_run_meta(cfg.out, RunMeta(
        roadmap={"name": cfg.roadmap.name, "path": str(cfg.roadmap.path)},
        recipe=NamedRecipe(name=cfg.recipe.name, values=cfg.recipe.to_dict()),
        step_recipes={k: NamedRecipe(name=v.name, values=v.to_dict()) for k, v in cfg.step_recipes.items()},
        data=str(cfg.data),
        proxy=cfg.proxy.to_dict(),
        seeds=seeds, steps=steps, device=cfg.device, world_size=cfg.dist.world,
        per_process_batch=cfg.recipe.batch_size, global_batch=cfg.global_batch,
        lr=cfg.recipe.scaled_lr(cfg.global_batch),
        torch=torch.__version__, compared=compared, config_hash=digest, code=code_version(),
        machine=machine(torch.cuda.get_device_name(cfg.device) if cfg.device.startswith("cuda") else None),
        identity=run_identity(cfg), source={"roadmap": roadmap_file, "files": hashes}))


def _identity(compared: dict[str, Any]) -> dict[str, Any]:
    """What decides a run's results: ``compared`` without the recipes' names, descriptions and
    substitute tables (a recipe renamed with the same values is the same run, as for the job
    fingerprints; the substitutes' effect is in ``step_recipes``)."""
    def values(r: Any) -> Any:
        return {k: v for k, v in r.items() if k not in NOT_IN_FINGERPRINT} if isinstance(r, dict) else r

    out = dict(compared)
    out["recipe"] = values(out.get("recipe"))
    if isinstance(out.get("step_recipes"), dict):
        out["step_recipes"] = {k: values(v) for k, v in out["step_recipes"].items()}
    return out


__all__ = ["fingerprint_parts", "job_mismatch", "record_run_meta", "run_identity", "source_files", "user_kind_hashes"]
