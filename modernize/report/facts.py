"""What a report records about its run besides the table: provenance, every finished seed,
the training curves and the architecture each step was trained as (so the page draws it
without the run folder)."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..checks.fidelity import proxy_rules_in_use
from ..errors import ConfigError, ModernizeError
from ..proxy import ProxyScale
from ..runfolder import job_folder, read_job_config
from ..spec import ArchSpec
from .load import Run
from .record import Curve, Provenance, SeedResult, Status


def shown_path(path: Path) -> str:
    """Relative to the working folder when inside it, so committed reports name no machine."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):  # outside the working folder, or the working folder was deleted
        return str(path)


def relative_only(path: str) -> str:
    """``path`` when relative, else '': a report names no machine's folder."""
    return "" if not path or Path(path).is_absolute() or path.startswith("~") else path


def proxy_settings(meta_proxy: Any) -> dict[str, Any]:
    """run.json's proxy as :class:`ProxyScale` fields (its notes left out)."""
    known = {f.name for f in fields(ProxyScale)}
    return {k: v for k, v in (meta_proxy or {}).items() if k in known} if isinstance(meta_proxy, dict) else {}


def proxy_scale(settings: dict[str, Any]) -> ProxyScale:
    """The :class:`ProxyScale` of recorded settings; the paper's scale when they are not valid."""
    try:
        return ProxyScale(**settings)
    except (ConfigError, TypeError):
        return ProxyScale()


def provenance(run: Run) -> Provenance:
    m = run.meta
    path = m["roadmap"].get("path") or ""
    # Relative inside the working folder (every built-in roadmap); a roadmap file elsewhere keeps its
    # absolute path here only, so `report --page-only` finds it again (no rendered file names it).
    return Provenance(roadmap=run.roadmap.name, roadmap_path=shown_path(path) if path else "",
                      title=run.roadmap.description or run.roadmap.name, recipe=str(m["recipe"]["name"]),
                      data=str(m.get("data", "?")), seeds=tuple(run.seeds), proxy=proxy_settings(m.get("proxy")),
                      proxy_in_use=dict(proxy_rules_in_use(m.get("proxy"), [s.spec for s in run.roadmap])),
                      run_dir=relative_only(shown_path(run.run_dir)), **budget(m["recipe"].get("values") or {}))


def budget(values: dict[str, Any]) -> dict[str, Any]:
    """The recipe's epochs and training images, the page's plain-words line."""
    try:
        return {"epochs": float(values.get("epochs", math.nan)), "train_images": int(values.get("train_images") or 0)}
    except (TypeError, ValueError):
        return {}


def seeds(run: Run) -> tuple[SeedResult, ...]:
    """Every finished job's top-1/top-5, in roadmap order (``seeds.csv``)."""
    out = []
    for step, by_seed in run.results.items():
        for seed, r in sorted(by_seed.items()):
            top1 = r.get("top1")
            if r.get("status") == "done" and top1 is not None and math.isfinite(float(top1)):
                out.append(SeedResult(step, seed, float(top1), float(r.get("top5") or math.nan)))
    return tuple(out)


def curves(run: Run) -> tuple[Curve, ...]:
    out = []
    for step, logs in run.logs.items():
        for seed, log in sorted(logs.items()):
            status = str(run.results.get(step, {}).get(seed, {}).get("status", "running"))
            points = [(e, t) for e, t in zip(map(_number, log["epoch"]), map(_number, log["top1"]))
                      if math.isfinite(e) and math.isfinite(t)]  # a damaged log line draws nothing
            out.append(Curve(step, seed, Status(status) if status in Status._value2member_map_ else Status.RUNNING,
                             tuple(e for e, _ in points), tuple(t for _, t in points)))
    return tuple(out)


def _number(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def specs(run: Run) -> dict[str, dict[str, Any]]:
    """Each step as its job trained it (``config.json``: proxy, data channels and classes),
    else as the run's proxy makes it."""
    proxy = proxy_scale(proxy_settings(run.meta.get("proxy")))
    out: dict[str, dict[str, Any]] = {}
    for step in run.roadmap:
        for seed in run.seeds:
            try:
                out[step.name] = ArchSpec.from_dict(read_job_config(job_folder(run.run_dir, step.name, seed))["spec"]
                                                    ).to_dict()
                break
            except (OSError, ConfigError, KeyError, TypeError, ValueError):
                continue
        else:
            try:
                out[step.name] = proxy.apply(step.spec).to_dict()
            except ModernizeError:  # invalid under the proxy (never trained): drawn at the paper's scale
                continue
    return out


__all__ = ["curves", "proxy_scale", "proxy_settings", "provenance", "relative_only", "seeds", "shown_path", "specs"]
