"""The candidate changes of an explore: by default the steps of a roadmap after the start
(steps that apply the same transforms with other parameters, such as the paper's kernel sizes
5/7/9/11, form one knob), or a TOML file of candidates (``docs/explore.md``)::

    imports = ["my_kinds"]              # user modules, next to this file (transforms, kinds)

    [[candidates]]
    name = "gelu"
    apply = "gelu"                      # as a roadmap step's apply: a name, a table or a list

    [[candidates]]
    name = "kernel"                     # a knob: its alternatives compete, at most one is kept
    alternatives = [
      { name = "kernel_5", apply = { transform = "kernel_size", kernel_size = 5 } },
      { name = "kernel_7", apply = { transform = "kernel_size", kernel_size = 7 } },
    ]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import read_toml
from ..roadmap import Roadmap, Step, check_step_name, import_user_modules
from ..spec import base_spec
from ..transforms import get_transform
from .search import Alternative, Call, Knob


@dataclass(frozen=True)
class CandidateSet:
    knobs: tuple[Knob, ...]
    source: str
    """Where they came from (a roadmap name or a file), for the outputs."""
    imports: tuple[tuple[str, str], ...] = ()
    """User modules as ``(module, folder)``, imported on load and by every worker."""


def label(calls: Sequence[Call]) -> str:
    """``kernel size (kernel_size=7)`` + ..., as a roadmap step's change."""
    parts = []
    for name, params in calls:
        text = get_transform(name).label
        if params:
            text += " (" + ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in params.items()) + ")"
        parts.append(text)
    return " + ".join(parts)


def chain(roadmap: Roadmap, step: Step) -> list[Call]:
    """Every transform from the roadmap's base to ``step``, in order (its ancestors' first)."""
    calls: list[Call] = []
    cur: Step | None = step
    while cur is not None:
        calls = [*cur.transforms, *calls]
        cur = roadmap[cur.parent] if cur.parent else None
    return calls


def from_roadmap(roadmap: Roadmap, start: Step) -> CandidateSet:
    """The roadmap's steps that are not the start's ancestors, have transforms and no recipe
    override; steps applying the same transform names (with other parameters) are one knob,
    named after its first step."""
    ancestors = set()
    cur: Step | None = start
    while cur is not None:
        ancestors.add(cur.name)
        cur = roadmap[cur.parent] if cur.parent else None
    groups: dict[tuple[str, ...], list[Step]] = {}
    for s in roadmap:
        if s.name in ancestors or not s.transforms or s.recipe:
            continue
        groups.setdefault(tuple(t for t, _ in s.transforms), []).append(s)
    knobs = []
    for names, steps in groups.items():
        alts = tuple(Alternative(s.name, tuple(s.transforms), s.change) for s in steps)
        knobs.append(Knob(names[0] if len(steps) > 1 else steps[0].name, alts))
    if not knobs:
        raise ConfigError(f"{roadmap.path}: no step after '{start.name}' applies a transform; give --candidates FILE")
    return CandidateSet(tuple(knobs), f"roadmap {roadmap.name}", roadmap.imports)


def load_candidates(path: Path) -> CandidateSet:
    """A candidates TOML file (module docstring), its user modules imported first."""
    data = read_toml(path, "candidates")

    def fail(msg: str) -> ConfigError:
        return ConfigError(f"{path}: {msg}")

    unknown = set(data) - {"imports", "candidates"}
    if unknown:
        raise fail(f"unknown key(s) {', '.join(sorted(unknown))} (valid: imports, candidates)")
    mods = data.get("imports", [])
    if not isinstance(mods, list) or not all(isinstance(m, str) and m for m in mods):
        raise fail(f"'imports' must be a list of module names, got {mods!r}")
    imports = tuple((m, str(path.parent.resolve())) for m in mods)
    # the roadmap loader's own import (errors name the file); a roadmap with no steps carries them
    import_user_modules(Roadmap(name=path.stem, path=path, base=base_spec("resnet50"), steps=(), imports=imports))
    raw = data.get("candidates")
    if not isinstance(raw, list) or not raw:
        raise fail("needs at least one [[candidates]] table")
    knobs: list[Knob] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        knob = _knob(i, item, seen, fail)
        if any(k.name == knob.name for k in knobs):  # one knob decided would take the other out with it
            raise fail(f"candidates[{i}]: knob name '{knob.name}' appears twice; names must be unique")
        knobs.append(knob)
    return CandidateSet(tuple(knobs), str(path), imports)


def _knob(i: int, item: Any, seen: set[str], fail: Any) -> Knob:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise fail(f"candidates[{i}] needs a 'name' string")
    name = item["name"]
    extra = set(item) - {"name", "apply", "alternatives"}
    if extra or ("apply" in item) == ("alternatives" in item):
        raise fail(f"candidate '{name}': give either 'apply' or 'alternatives' (and only 'name' besides)")
    if "apply" in item:
        alts_raw: list[Any] = [{"name": name, "apply": item["apply"]}]
    else:
        alts_raw = item["alternatives"]
        if not isinstance(alts_raw, list) or not alts_raw:
            raise fail(f"candidate '{name}': 'alternatives' must be a list of {{name = ..., apply = ...}} tables")
    alts = []
    for a in alts_raw:
        if not isinstance(a, dict) or set(a) != {"name", "apply"} or not isinstance(a["name"], str):
            raise fail(f"candidate '{name}': each alternative is {{name = \"...\", apply = ...}}, got {a!r}")
        why = check_step_name(a["name"])
        if why:
            raise fail(f"candidate '{name}': {why}")
        if a["name"] in seen:
            raise fail(f"candidate '{name}': name '{a['name']}' appears twice; names must be unique")
        seen.add(a["name"])
        calls = _calls(a["apply"], lambda msg, n=a["name"]: fail(f"candidate '{n}': {msg}"))
        alts.append(Alternative(a["name"], calls, label(calls)))
    return Knob(name, tuple(alts))


def _calls(raw: Any, fail: Any) -> tuple[Call, ...]:
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, str):
            item = {"transform": item}
        if not isinstance(item, dict) or not isinstance(item.get("transform"), str):
            raise fail("'apply' takes a transform name or {transform = \"name\", param = value, ...}")
        params = {k: v for k, v in item.items() if k != "transform"}
        try:  # a misspelt or ill-typed parameter is the file's mistake, not "not applicable" in every round
            get_transform(item["transform"]).check(params)
        except ConfigError as exc:
            raise fail(str(exc)) from None
        out.append((item["transform"], params))
    if not out:
        raise fail("'apply' is empty")
    return tuple(out)
