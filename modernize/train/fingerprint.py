"""What a job and a run were trained with. A job is reused (skipped or resumed) only when its
fingerprint (``fingerprint_parts``) matches this command's; ``run.json`` is the run-level
record, checked under a file lock, not the authority."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..kinds import get_kind
from ..provenance import code_version, machine
from ..recipe import Recipe, config_hash
from ..roadmap import Step
from ..runfolder import (
    NOT_IN_FINGERPRINT,
    RUN_META,
    NamedRecipe,
    RunMeta,
    differing,
    fingerprint_fields,
    read_job_config,
    read_run_meta,
    short,
    write_run_meta,
)
from ..spec import ArchSpec
from .batches import batching
from .config import RunConfig


def fingerprint_parts(cfg: RunConfig, step: Step, recipe: Recipe, seed: int) -> dict[str, Any]:
    """Everything that determines a job's result: the step's paper spec (the proxy is applied
    to it), the resolved recipe values, the data spec, the seed, the effective global batch
    (batch x processes x accumulation: a run may resume on another process count that keeps
    it), the torch version (major.minor) and, for kinds a user module registered, the hash of
    that module's source. Not included: the device and the number of threads (same numbers up
    to floating-point order), the contents of a data folder (only its spec string)."""
    global_batch = batching(recipe, cfg.dist.world).global_batch
    parts = fingerprint_fields(step_spec=step.spec.to_dict(), proxy=cfg.proxy.to_dict(), recipe=recipe.to_dict(),
                               data=str(cfg.data), seed=seed, global_batch=global_batch,
                               torch_version=torch.__version__)
    kinds = user_kind_hashes(step.spec)
    if kinds:  # only then: the paper's steps keep the fingerprints they always had
        parts["kinds"] = kinds
    return parts


def user_kind_hashes(spec: ArchSpec) -> dict[str, str]:
    """``{"family:name": hash}`` of the kinds a spec uses that a user module registered: the
    hash of that module's source, so an edited module is not silently reused."""
    used = [("act", spec.act), ("norm", spec.norm), *(("component", c.kind) for c in spec.components)]
    kinds = [get_kind(family, name) for family, name in used]
    return {f"{k.family}:{k.name}": k.source_hash for k in kinds if not k.builtin}


def _pre_fingerprint_parts(old: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint parts of a job trained before fingerprints, from its config.json (such
    job folders exist in real runs, e.g. the proxy study's)."""
    recipe = old.get("recipe") if isinstance(old.get("recipe"), dict) else {}
    return json.loads(json.dumps({
        "step_spec": old.get("paper_spec"), "proxy": old.get("proxy"),
        "recipe": {k: v for k, v in recipe.items() if k not in NOT_IN_FINGERPRINT},
        "data": old.get("data"), "seed": old.get("seed"), "global_batch": old.get("global_batch")},
        sort_keys=True, default=str))


def job_mismatch(job_dir: Path, parts: dict[str, Any]) -> str | None:
    """None when the job folder is empty or was trained with these fingerprint parts; else what
    differs (one line)."""
    if not any((job_dir / f).exists() for f in ("config.json", "result.json", "last.pt", "prev.pt")):
        return None
    try:
        old = read_job_config(job_dir)
    except FileNotFoundError:
        return "config.json is missing (cannot tell how it was trained)"
    except ConfigError as exc:
        return f"config.json is unreadable ({short(str(exc).split(': ', 1)[-1], 120)})"
    if old.get("fingerprint") == config_hash(parts):
        return None
    if isinstance(old.get("fingerprint_parts"), dict):
        diff = differing(old["fingerprint_parts"], parts)
    else:  # trained before fingerprints: compare what its config.json recorded
        diff = differing(_pre_fingerprint_parts(old), {k: v for k, v in parts.items() if k != "torch"})
        if not diff:
            return None
    return short(", ".join(diff), 240) or "fingerprint"


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
    write_run_meta(cfg.out, RunMeta(
        roadmap={"name": cfg.roadmap.name, "path": str(cfg.roadmap.path)},
        recipe=NamedRecipe(name=cfg.recipe.name, values=cfg.recipe.to_dict()),
        step_recipes={k: NamedRecipe(name=v.name, values=v.to_dict()) for k, v in cfg.step_recipes.items()},
        data=str(cfg.data),
        proxy=cfg.proxy.to_dict() | {"low_res": cfg.proxy.stem_stride is not None,
                                     "note": "width/depth multipliers on every step's spec; stem total "
                                             "stride set to proxy.stem_stride for both stem kinds"},
        seeds=seeds, steps=steps, device=cfg.device, world_size=cfg.dist.world,
        per_process_batch=cfg.recipe.batch_size, global_batch=cfg.global_batch,
        lr=cfg.recipe.scaled_lr(cfg.global_batch),
        torch=torch.__version__, compared=compared, config_hash=digest, code=code_version(),
        machine=machine(torch.cuda.get_device_name(cfg.device) if cfg.device.startswith("cuda") else None)))


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
