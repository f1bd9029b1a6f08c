"""Every key, every type: each key the schemas name (roadmap top level, steps, ``apply`` tables,
recipes, ``[substitute.NAME]`` tables, run.json, config.json, result.json), enumerated from the
code, given each TOML/JSON type, loads with a value of its type or is one ``ConfigError`` line
naming the file and the key; never another exception, never a coerced value of the wrong kind.

The grid tries one representative of every type on every key (so none is left out); Hypothesis
draws further documents (derandomized by the ``ci`` profile in conftest.py). The oracle
``matches`` is written here, apart from ``modernize._typing``, so that it can disagree with it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import tempfile
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modernize import ConfigError, load_roadmap, runfolder
from modernize import recipe as recipe_mod
from modernize._typing import schema_hints
from modernize.recipe import Recipe, load_recipe
from modernize.roadmap import RoadmapFile, StepFile
from modernize.spec import ArchSpec, KindArgs
from modernize.transforms import TRANSFORMS

from .conftest import ROOT

_NONE = object()

# --- the oracle ------------------------------------------------------------------------------------


def matches(value: Any, hint: Any, *, loaded: bool = False) -> bool:
    """Is ``value`` of the kind ``hint`` names? An int is a float (in a file; once ``loaded``
    into a recipe it must be a float), a bool is not an int, a list is a tuple."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (Union, types.UnionType):
        return any(matches(value, a, loaded=loaded) for a in args)
    if hint is type(None):
        return value is None
    if hint in (bool, int, str):
        return type(value) is hint
    if hint is float:
        return type(value) is float or (type(value) is int and not loaded)
    if hint == KindArgs and isinstance(value, dict):  # a kind's parameters: a table in files, pairs in a spec
        return all(isinstance(k, str) for k in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0], loaded=loaded) for v in value)
        return len(value) == len(args) and all(matches(v, a, loaded=loaded) for v, a in zip(value, args))
    if origin is list:
        return isinstance(value, list) and all(matches(v, args[0], loaded=loaded) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict) and all(matches(v, args[1], loaded=loaded) for v in value.values()) \
            if args else isinstance(value, dict)
    if typing.is_typeddict(hint):
        sub = typing.get_type_hints(hint)
        return isinstance(value, dict) and all(matches(v, sub[k], loaded=loaded) for k, v in value.items() if k in sub)
    raise AssertionError(f"the oracle does not know {hint!r}: teach it")


# --- writing TOML and JSON -----------------------------------------------------------------------


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):  # TOML escapes are JSON's, and DEL must be escaped too
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise AssertionError(f"no TOML for {v!r}")


RECIPE_BASE = {"base": "quick"}
"""A recipe file names a base or gives every budget key (``recipe.BUDGET_KEYS``): one key on its own is refused."""


def toml_doc(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


# --- the values of each type ---------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_KEY = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
_SCALAR = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(), st.booleans(), _TEXT, st.just(""))
_UTC = st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30))])

TOML_KINDS: dict[str, st.SearchStrategy[Any]] = {
    "integer": st.integers(-2**63, 2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "nan/inf": st.sampled_from([math.nan, math.inf, -math.inf]),
    "boolean": st.booleans(),
    "string": _TEXT,
    "empty string": st.just(""),
    "array": st.lists(st.one_of(_SCALAR, st.lists(_SCALAR, max_size=2)), max_size=4),
    "inline table": st.dictionaries(_KEY, st.one_of(_SCALAR, st.lists(_SCALAR, max_size=2)), max_size=3),
    "datetime": st.datetimes(timezones=_UTC),
    "date": st.dates(),
    "time": st.times(),
}
JSON_KINDS = {k: s for k, s in TOML_KINDS.items() if k not in ("datetime", "date", "time")} | {
    "null": st.none(), "datetime": st.datetimes().map(dt.datetime.isoformat)}  # JSON's datetime is a string

REPRESENTATIVES: list[Any] = [
    3, -1, 0, 2**63 - 1, 0.5, 1e300, math.nan, math.inf, -math.inf, True, False, "x", "resnet50", "../..",
    "a\x00b\x7f", "",
    [], ["a"], [3, 3, 9, 3], [0.5, 0.5], [1, "a"], [{"a": 1}], {}, {"a": 1}, {"name": "a", "path": "p"},
    dt.datetime(2020, 1, 2, 3, 4, 5), dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC), dt.date(2020, 1, 2),
    dt.time(3, 4, 5),
]
JSON_REPRESENTATIVES = [v for v in REPRESENTATIVES if not isinstance(v, (dt.date, dt.time))] + [None, "2020-01-02"]


# --- the targets: every key of every schema ------------------------------------------------------

BASE_ROADMAP: dict[str, Any] = {"name": "mini", "base": "resnet50", "steps": [
    {"name": "resnet50"}, {"name": "stage_ratio", "apply": {"transform": "stage_ratio", "depths": [3, 3, 9, 3]}},
    {"name": "x"}]}


@dataclass(frozen=True)
class Target:
    """One key of one file kind: how to write a document with ``value`` there, load it, and read
    the loaded value back (``_NONE`` where the loaded object does not keep it)."""

    where: str
    key: str
    hint: Any
    json: bool
    build: Callable[[Any], str]
    load: Callable[[Path], Any]
    get: Callable[[Any], Any]
    names: tuple[str, ...]
    """One of these must be in the error line (the key, or the table holding it)."""

    @property
    def id(self) -> str:
        return f"{self.where}.{self.key}"


def _roadmap_top(key: str, value: Any) -> str:
    return toml_doc(BASE_ROADMAP | {key: value})


def _roadmap_step(key: str, value: Any) -> str:
    steps = [*BASE_ROADMAP["steps"][:-1], {"name": "x", key: value}]
    return toml_doc(BASE_ROADMAP | {"steps": steps})


def _roadmap_apply(transform: str | None, key: str, value: Any) -> str:
    table = {"transform": value} if transform is None else {"transform": transform, key: value}
    return toml_doc(BASE_ROADMAP | {"steps": [*BASE_ROADMAP["steps"][:-1], {"name": "x", "apply": table}]})


_ROADMAP_ATTR = {"name": "name", "description": "description", "recipe": "recipe"}
_STEP_ATTR = {"name": "name", "paper_row": "paper_row", "adopted": "adopted", "recipe": "recipe", "change": "change"}


def _step_get(key: str) -> Callable[[Any], Any]:
    return lambda rm: getattr(rm.steps[-1], _STEP_ATTR[key]) if key in _STEP_ATTR else _NONE


BASE_RECORDS: dict[str, dict[str, Any]] = {
    runfolder.RUN_META: {"roadmap": {"name": "r", "path": "r.toml"}, "recipe": {"name": "quick", "values": {}},
                         "seeds": [0]},
    runfolder.JOB_CONFIG: {"step": "a", "seed": 0},
    runfolder.RESULT: {"step": "a", "seed": 0, "status": "done"},
}
READERS: dict[str, tuple[Any, Callable[[Path], Any]]] = {
    runfolder.RUN_META: (runfolder.RunMeta, lambda p: runfolder.read_run_meta(p.parent)),
    runfolder.JOB_CONFIG: (runfolder.JobConfig, lambda p: runfolder.read_job_config(p.parent)),
    runfolder.RESULT: (runfolder.JobResult, lambda p: runfolder.load_result(p.parent)),
}


def targets() -> list[Target]:
    out = []
    for key, hint in typing.get_type_hints(RoadmapFile).items():
        out.append(Target("roadmap", key, hint, False, lambda v, k=key: _roadmap_top(k, v), load_roadmap,
                          lambda rm, k=key: getattr(rm, _ROADMAP_ATTR[k]) if k in _ROADMAP_ATTR else _NONE, (key,)))
    for key, hint in typing.get_type_hints(StepFile).items():
        out.append(Target("step", key, hint, False, lambda v, k=key: _roadmap_step(k, v), load_roadmap,
                          _step_get(key), (key,)))
    base_hints = {"from": str} | typing.get_type_hints(ArchSpec)
    for key, hint in base_hints.items():
        out.append(Target("base", key, hint, False, lambda v, k=key: toml_doc(BASE_ROADMAP | {"base": {k: v}}),
                          load_roadmap, lambda rm, k=key: getattr(rm.base, k) if k != "from" else _NONE, ("base",)))
    out.append(Target("apply", "transform", str, False, lambda v: _roadmap_apply(None, "transform", v), load_roadmap,
                      lambda rm: rm.steps[-1].transforms[0][0], ("apply", "transform")))
    for tname, transform in TRANSFORMS.items():
        for key, (hint, _) in transform.params.items():
            out.append(Target(f"apply[{tname}]", key, hint, False, lambda v, t=tname, k=key: _roadmap_apply(t, k, v),
                              load_roadmap, lambda rm, k=key: rm.steps[-1].transforms[0][1][k], (key, tname)))
    for key, hint in schema_hints(Recipe).items():
        out.append(Target("recipe", key, hint, False, lambda v, k=key: toml_doc(RECIPE_BASE | {k: v}), load_recipe,
                          lambda r, k=key: getattr(r, k), (key,)))
    for key, hint in recipe_mod._SUB_HINTS.items():
        out.append(Target("substitute", key, hint, False,
                          lambda v, k=key: toml_doc(RECIPE_BASE | {"substitute": {"quick": {k: v}}}), load_recipe,
                          lambda r, k=key: r.substitute["quick"][k], (f"substitute.quick': key '{key}'",)))
    for fname, (schema, reader) in READERS.items():
        for key, hint in typing.get_type_hints(schema).items():
            out.append(Target(fname, key, hint, True,
                              lambda v, f=fname, k=key: json.dumps(BASE_RECORDS[f] | {k: v}), reader,
                              lambda rec, k=key: rec[k], (key,)))
    return out


TARGETS = targets()


def check(target: Target, value: Any, folder: Path) -> str:
    """Write, load, judge; returns "loaded" or "refused" (anything else is a failed assertion)."""
    name = target.where.split("[")[0] if not target.json else target.where
    path = folder / (name if target.json else f"{name}.toml")
    path.write_text(target.build(value), encoding="utf-8")
    try:
        obj = target.load(path)
    except ConfigError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1, message
        assert str(path) in message, message
        assert any(n in message for n in target.names), f"{target.id}={value!r}: the error names no key: {message}"
        return "refused"
    assert matches(value, target.hint), f"{target.id}={value!r} loaded, though not {target.hint}"
    loaded = target.get(obj)
    if loaded is not _NONE:
        assert matches(loaded, target.hint, loaded=target.where in ("recipe", "step", "roadmap", "base")), \
            f"{target.id}={value!r} loaded as {loaded!r}"
    return "loaded"


def test_every_schema_key_is_a_target() -> None:
    """The keys come from the code: a key added to a schema is in the grid without an edit here."""
    ids = {t.id for t in TARGETS}
    assert {"step.from", "step.paper_row", "apply.transform", "apply[kernel_size].kernel_size", "recipe.lr",
            "substitute.epochs", "run.json.seeds", "config.json.lr", "result.json.top1"} <= ids
    assert len([t for t in TARGETS if t.where == "recipe"]) == len(recipe_mod.KEYS)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.id)
def test_every_key_every_type(target: Target, tmp_path: Path) -> None:
    values = JSON_REPRESENTATIVES if target.json else REPRESENTATIVES
    outcomes = {repr(v): check(target, v, tmp_path) for v in values}
    assert "refused" in outcomes.values()  # every key refuses something: the check can fail


def test_known_failures_are_one_line(tmp_path: Path) -> None:
    """Issue 23's reports: a list or a table where a step wants a string."""
    for key, value in (("from", ["a"]), ("paper_row", ["a"]), ("paper_row", {"a": 1}), ("from", {"a": 1})):
        target = next(t for t in TARGETS if t.id == f"step.{key}")
        assert check(target, value, tmp_path) == "refused"


@given(data=st.data())
def test_generated_documents(data: st.DataObject) -> None:
    target = data.draw(st.sampled_from(TARGETS), label="target")
    kinds = JSON_KINDS if target.json else TOML_KINDS
    kind = data.draw(st.sampled_from(sorted(kinds)), label="type")
    value = data.draw(kinds[kind], label="value")
    with tempfile.TemporaryDirectory() as folder:
        check(target, value, Path(folder))


CLI_CASES = {"from_list": ("step", "from", ["a"]), "paper_row_table": ("step", "paper_row", {"a": 1}),
             "apply_datetime": ("apply[kernel_size]", "kernel_size", dt.datetime(2020, 1, 2))}


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses_ill_typed_roadmaps(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`flops FILE` on an ill-typed step is exit 2 and one stderr line: the first case through the
    real script in a fresh interpreter, the others through the same entry point in this process
    (a fresh interpreter imports torch, seconds each on a loaded machine)."""
    from modernize.cli import main

    where, key, value = CLI_CASES[case]
    target = next(t for t in TARGETS if t.where == where and t.key == key)
    path = tmp_path / f"{case}.toml"
    path.write_text(target.build(value), encoding="utf-8")
    argv = ["flops", str(path), "--out", str(tmp_path / "out")]
    if case == next(iter(CLI_CASES)):
        proc = subprocess.run([sys.executable, str(ROOT / "run_ablation.py"), *argv], cwd=tmp_path, text=True,
                              capture_output=True, timeout=600)
        rc, err = proc.returncode, proc.stderr
    else:
        monkeypatch.chdir(tmp_path)
        rc, err = main(argv), capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0] and key in lines[0], err
    assert not (tmp_path / "out").exists()
