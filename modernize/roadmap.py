"""Roadmaps: an ordered list of steps, each a spec reached by applying transforms.

A roadmap is a TOML file (see ``ablations/*.toml``)::

    name = "resnet50_to_convnext_t"
    base = "resnet50"                    # a name from BASE_SPECS, or a table of spec fields
    paper = "paper/paper_roadmap_r50.csv" # optional: the paper's per-row numbers (or "r50", "r200":
                                         # a shipped table by name, from any folder)
    recipe = "paper"                     # the one fixed training recipe (issue: training)

    [[steps]]
    name = "stage_ratio"
    paper_row = "stage_ratio"
    apply = { transform = "stage_ratio", depths = [3, 3, 9, 3] }

``apply`` is a transform name, one inline table, or a list of them (applied in order);
a step without ``apply`` keeps its parent's architecture (e.g. a recipe-only step). A
step's parent is the latest adopted step before it, or the step named by ``from``; a
step with ``adopted = false`` is an explored branch that the chain does not continue from.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from . import user_modules
from ._typing import check_fields
from .csvtable import PAPER_RULES, read_checked
from .errors import ConfigError, ModernizeError
from .files import check_regular_file, read_toml
from .paths import ablations_dir, builtin_names, resolve_builtin
from .proxy import ProxyScale, proxy_label
from .spec import ArchSpec, base_spec
from .transforms import get_transform

ABLATIONS_DIR = ablations_dir()
DEFAULT_ROADMAP = "resnet50_to_convnext_t"


class RoadmapFile(TypedDict, total=False):
    """The top-level keys of a roadmap file and their TOML types: the one list, checked at load
    (``_typing.check_fields``) before anything is imported or built."""

    name: str
    description: str
    base: str | dict[str, Any]
    paper: str
    recipe: str
    imports: list[str]
    steps: list[dict[str, Any]]


ApplyItem = str | dict[str, Any]
"""A transform name, or ``{transform = "name", param = value, ...}`` (the parameters are typed by
the transform's signature, checked when it is applied)."""
StepFile = TypedDict("StepFile", {  # "from" is a keyword: the functional form
    "name": str, "apply": ApplyItem | list[ApplyItem], "paper_row": str, "from": str, "adopted": bool,
    "recipe": str, "change": str}, total=False)
"""The keys of one ``[[steps]]`` table and their TOML types."""

STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
"""A step name is a folder name of the run directory: no path separators, no leading dot."""
RESERVED_NAMES = frozenset({"run.json", "report", "bench.csv"})
"""Names of files and folders the engine and the report write at the top of RUN_DIR."""


def check_folder_name(name: str, what: str) -> str | None:
    """Why ``name`` cannot become one folder of a path (``runs/<roadmap>``, ``RUN_DIR/<step>``),
    or None when it can: no separator, no '..', not empty, not hidden, not absolute."""
    if not STEP_NAME.fullmatch(name) or name.endswith(".") or ".." in name:
        return (f"{what} {name!r} is not a safe folder name (letters, digits, '_', '.', '-'; "
                "starting with a letter or digit; at most 100 characters)")
    return None


def check_step_name(name: str) -> str | None:
    """Why ``name`` cannot be a step (run-folder) name, or None when it can."""
    why = check_folder_name(name, "step name")
    if why:
        return why
    if name.lower() in RESERVED_NAMES or name.lower().endswith((".lock", ".json", ".tmp")):
        return f"step name {name!r} is reserved in a run folder ({', '.join(sorted(RESERVED_NAMES))}, *.json, *.lock)"
    return None


@dataclass(frozen=True)
class Step:
    """One row of a roadmap: its architecture and where it sits in the paper."""

    name: str
    spec: ArchSpec
    change: str
    paper_row: str | None = None
    adopted: bool = True
    parent: str | None = None
    recipe: str | None = None
    """Recipe override for this step (None: the roadmap's recipe)."""
    transforms: tuple[tuple[str, dict[str, Any]], ...] = ()
    paper: dict[str, str] = field(default_factory=dict)
    """The paper's CSV row (``paper_top1``, ``paper_gflops``, ``note``, ...), if any."""


@dataclass(frozen=True)
class Roadmap:
    name: str
    path: Path
    base: ArchSpec
    steps: tuple[Step, ...]
    recipe: str | None = None
    description: str = ""
    paper_path: Path | None = None
    """The paper's per-row CSV this roadmap is compared with, if any."""
    imports: tuple[tuple[str, str], ...] = ()
    """The user modules it imports, as ``(module, folder)``: every process that builds its
    models imports them again (``import_user_modules``) to register their kinds."""

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, key: int | str) -> Step:
        if isinstance(key, int):
            return self.steps[key]
        for step in self.steps:
            if step.name == key:
                return step
        raise KeyError(key)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def recipe_source(self, value: str) -> str | Path:
        """Where a recipe this file names (``recipe = ...``, top level or a step's) is read: a
        built-in by its bare name, else a path relative to the roadmap file (not the current folder)."""
        bare = Path(value)
        if bare.suffix == "" and bare.parent == Path(".") and value in builtin_names("recipes"):
            return value
        return self.path.parent / bare

    def select(self, names: list[str] | None) -> list[Step]:
        """Steps by name, in roadmap order; an unknown name is a ``ConfigError``."""
        if not names:
            return list(self.steps)
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise ConfigError(f"--steps: unknown step(s) {', '.join(unknown)} in roadmap '{self.name}' "
                              f"(valid: {', '.join(self.names)})")
        return [s for s in self.steps if s.name in names]


def check_under_proxy(roadmap: Roadmap, proxy: ProxyScale, steps: Sequence[Step] | None = None) -> list[Step]:
    """Every step (or ``steps``) with the proxy applied to its spec. A spec that the proxy makes
    invalid (``groups = 32`` on a 16-channel proxy conv) is a ``ConfigError`` naming the step, the
    roadmap file and the proxy: refused before any work, not when that step's job starts."""
    out = []
    for s in roadmap.steps if steps is None else steps:
        try:
            out.append(dataclasses.replace(s, spec=proxy.apply(s.spec)))
        except ModernizeError as exc:
            raise ConfigError(f"{roadmap.path}: step '{s.name}' is invalid under proxy {proxy_label(proxy)}: "
                              f"{exc}") from None
    return out


def builtin_roadmaps() -> list[str]:
    return builtin_names()


def resolve_roadmap_path(path_or_name: str | Path | None) -> Path:
    """A file path, or the name of a roadmap in ``ablations/`` (``resnet50_to_convnext_t``)."""
    return resolve_builtin(DEFAULT_ROADMAP if path_or_name is None else path_or_name, what="roadmap")


def load_roadmap(path_or_name: str | Path | None = None) -> Roadmap:
    """Load a roadmap file (or built-in name) and compute the spec of every step."""
    path = resolve_roadmap_path(path_or_name)
    data = read_toml(path, "roadmap")

    def fail(msg: str, step: str | None = None) -> ConfigError:
        where = f"{path}: step '{step}'" if step else f"{path}"
        return ConfigError(f"{where}: {msg}")

    _check_top_level(data, fail)
    name = str(data.get("name", path.stem))
    why = check_folder_name(name, "name" if "name" in data else "name (the file's stem, as no 'name' is given)")
    if why:  # it names runs/<name> and reports/<name>: '../x', '/abs' or '' would write elsewhere
        raise fail(why)
    try:
        imports = tuple(user_modules.resolve(m, path.parent) for m in data.get("imports", []))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _import_modules(imports, fail)
    try:
        base = _base_spec(data.get("base", "resnet50"))
    except (ModernizeError, TypeError) as exc:
        raise fail(f"base: {exc}") from None
    paper_file = resolve_paper(path, data["paper"]) if "paper" in data else None
    paper = _paper_rows(path, paper_file, data["paper"]) if paper_file else {}
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise fail("needs at least one [[steps]] table")

    by_name: dict[str, Step] = {}
    last_adopted: Step | None = None
    for i, raw in enumerate(raw_steps):
        step = _parse_step(i, raw, by_name, last_adopted, base, paper, str(data.get("paper")), fail)
        by_name[step.name] = step
        if step.adopted:
            last_adopted = step
    return Roadmap(name=name, path=path, base=base, steps=tuple(by_name.values()),
                   recipe=data.get("recipe"), description=str(data.get("description", "")),
                   paper_path=paper_file, imports=imports)


def _check_top_level(data: dict[str, Any], fail: Any) -> None:
    """The roadmap file's top-level keys and their types (``RoadmapFile``)."""
    check_fields(data, RoadmapFile, fail)
    if not all(m for m in data.get("imports", [])):
        raise fail(f"'imports' must be a list of module names, got {data['imports']!r}")


def import_user_modules(roadmap: Roadmap) -> None:
    """Import the roadmap's user modules in this process (a spawned worker, a Slurm task): their
    kinds and transforms register on import, and models name kinds only by name."""
    _import_modules(roadmap.imports, lambda msg: ConfigError(f"{roadmap.path}: {msg}"))


def _import_modules(imports: tuple[tuple[str, str], ...], fail: Any) -> None:
    """The roadmap's ``imports``: user transforms and kinds, registered on import, each from
    its own folder (``user_modules``)."""
    for module, folder in imports:
        try:
            user_modules.load(module, folder)
        except ConfigError as exc:
            raise fail(str(exc)) from None


def _parse_step(i: int, raw: Any, by_name: dict[str, Step], last_adopted: Step | None, base: ArchSpec,
                paper: dict[str, dict[str, str]], paper_file: str, fail: Any) -> Step:
    """One ``[[steps]]`` table: its parent (``from``, else the last adopted step) with its
    transforms applied."""
    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not name:
        raise fail(f"steps[{i}] needs a 'name' string")
    why = check_step_name(name)
    if why:
        raise fail(why, name)
    if name in by_name:
        raise fail("appears twice; step names must be unique", name)
    check_fields(raw, StepFile, lambda msg: fail(msg, name))  # types first: a list is not a step name
    if "from" in raw:
        if raw["from"] not in by_name:
            raise fail(f"'from' names '{raw['from']}', which is not an earlier step "
                       f"(earlier: {', '.join(by_name) or 'none'})", name)
        parent: Step | None = by_name[raw["from"]]
    else:
        parent = last_adopted
    spec = parent.spec if parent else base
    calls = _parse_apply(raw.get("apply", []), fail, name)
    for tname, params in calls:
        transform = get_transform(tname)
        try:
            spec = transform(spec, **params)
        except ModernizeError as exc:
            raise fail(str(exc), name) from None
        except (Exception, SystemExit) as exc:
            if transform.fn.__module__.split(".")[0] == "modernize":
                raise  # a built-in transform's bug: its traceback
            raise fail(user_modules.failure(exc, f"transform '{tname}'"), name) from exc
    paper_row = raw.get("paper_row")
    if paper_row is not None and paper and paper_row not in paper:
        raise fail(f"paper_row '{paper_row}' is not a row of {paper_file} (valid: {', '.join(paper)})", name)
    change = raw.get("change") or " + ".join(_label(t, p) for t, p in calls) or "no architecture change"
    return Step(name=name, spec=spec, change=change, paper_row=paper_row, adopted=raw.get("adopted", True),
                parent=parent.name if parent else None, recipe=raw.get("recipe"),
                transforms=tuple(calls), paper=paper.get(paper_row or "", {}))


def _label(tname: str, params: dict[str, Any]) -> str:
    label = get_transform(tname).label
    if params:
        label += " (" + ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in params.items()) + ")"
    return label


def _parse_apply(raw: Any, fail: Any, step: str) -> list[tuple[str, dict[str, Any]]]:
    items = raw if isinstance(raw, list) else [raw]
    calls = []
    for item in items:
        if isinstance(item, str):
            item = {"transform": item}
        if not isinstance(item, dict) or not isinstance(item.get("transform"), str):
            raise fail("'apply' takes a transform name or {transform = \"name\", param = value, ...}", step)
        params = {k: v for k, v in item.items() if k != "transform"}
        try:
            get_transform(item["transform"])
        except ModernizeError as exc:
            raise fail(f"apply: {exc}", step) from None
        calls.append((item["transform"], params))
    return calls


def _base_spec(raw: Any) -> ArchSpec:
    if isinstance(raw, str):
        return base_spec(raw)
    if isinstance(raw, dict):
        fields = dict(raw)
        start = base_spec(fields.pop("from", "resnet50"))
        return start.replace(**fields)
    raise ConfigError("'base' must be a spec name or a table of spec fields")


def builtin_papers() -> list[str]:
    """The shipped paper tables' short names (``r50`` for ``paper/paper_roadmap_r50.csv``)."""
    return sorted(p.stem.removeprefix("paper_roadmap_") for p in (ABLATIONS_DIR / "paper").glob("*.csv"))


def resolve_paper(path: Path, value: str) -> Path:
    """A roadmap's ``paper``: a shipped table by name (``r50``, or its stem ``paper_roadmap_r50``),
    so a copied roadmap keeps pointing at the shipped numbers; anything else is a CSV path
    relative to the roadmap file."""
    bare = Path(value)
    if bare.suffix == "" and bare.parent == Path("."):
        for stem in (value, f"paper_roadmap_{value}"):
            shipped = ABLATIONS_DIR / "paper" / f"{stem}.csv"
            if shipped.is_file():
                return shipped.resolve()
        if not (path.parent / bare).is_file():
            raise ConfigError(f"{path}: paper = {value!r}: no shipped paper table of that name and no such file "
                              f"next to the roadmap (shipped: {', '.join(builtin_papers())}; or a path to a CSV)")
    return (path.parent / bare).resolve()


def _paper_rows(path: Path, csv_path: Path, rel: str) -> dict[str, dict[str, str]]:
    try:
        check_regular_file(csv_path, "paper table")
        with csv_path.open(newline="", encoding="utf-8") as fh:
            rows = {row["row"]: row for row in csv.DictReader(fh)}
    except (OSError, KeyError, ValueError, RuntimeError, csv.Error, ConfigError) as exc:  # not UTF-8, loops
        raise ConfigError(f"{path}: paper: cannot read '{rel}' as a CSV with a 'row' column: "
                          f"{type(exc).__name__}: {exc}"[:400]) from None
    if not all(isinstance(k, str) for k in rows):
        raise ConfigError(f"{path}: paper: '{rel}' has rows without a 'row' value")
    read_checked(csv_path, "paper table", PAPER_RULES, key=("row",))  # numbers and duplicates: one line each
    return rows
