"""The report as data: :class:`ReportRecord`, computed once from a run and written as
``report.json``; every other file of a report folder (tables, figures, ``index.html``) is
rendered from it, so a rewording in one renderer cannot change what another one reads.

A row's status is a :class:`Status` with a reason beside it, the paper check a kind, a verdict
and an n/a reason, the proxy a dict of its settings: nothing here is prose that code parses.
``report.json`` carries :data:`SCHEMA`; older files and report folders written before it are
read through ``modernize.report.migrate``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd

from ..checks.fidelity import Fidelity
from ..checks.reference import Reproduction

T = TypeVar("T")

SCHEMA = 1
"""Version of ``report.json``; ``migrate.upgrade`` brings older versions to this one."""
RECORD_FILE = "report.json"

COLUMNS = ["step", "change", "adopted", "parent", "status", "n", "seeds", "top1_mean", "top1_std",
           "top5_mean", "best_top1_mean", "delta", "p_value", "within_noise", "gmacs", "params_m",
           "resolution", "recipe", "paper_row", "paper_top1", "paper_top1_std", "paper_gflops", "paper_delta",
           "infer_img_s", "train_img_s", "paper_check", "note"]
"""The columns of ``table.csv``, in order."""


class Status(enum.StrEnum):
    """What a step (or one of its jobs) is: the table shows ``value`` and the reason beside it."""

    DONE = "done"
    PARTIAL = "partial"
    """Some seeds finished, others failed, run or are missing (the note says which)."""
    FAILED = "failed"
    RUNNING = "running"
    MISSING = "missing"
    STALE = "stale"
    """Trained otherwise than the run now describes (never averaged in)."""


def status_text(status: Status, reason: str) -> str:
    """The table's status cell: ``failed (epoch 3: loss is NaN)``."""
    return f"{status.value} ({reason})" if reason else status.value


@dataclass(frozen=True)
class Row:
    """One roadmap step of the table, in the units of ``table.csv`` (NaN: no value)."""

    step: str
    change: str
    adopted: bool
    parent: str
    status: Status
    status_reason: str
    n: int
    seeds: int
    top1_mean: float
    top1_std: float
    top5_mean: float
    best_top1_mean: float
    delta: float
    p_value: float
    within_noise: str
    """'yes', 'no' or 'n/a'."""
    gmacs: float
    params_m: float
    resolution: float
    recipe: str
    paper_row: str
    paper_top1: float
    paper_top1_std: float
    paper_gflops: float
    paper_delta: float
    infer_img_s: float
    train_img_s: float
    paper_kind: str
    """'robust', 'equivalence', or '' (no check)."""
    paper_verdict: str
    """The verdict of ``modernize.checks.fidelity`` for ``paper_kind``; 'n/a' with ``na_reason``."""
    na_reason: str
    note: str
    phase: str = ""
    """The paper's design phase of the step's transform ('' for the base network, a recipe row or
    a user transform): the page groups the steps under it."""
    phase_section: str = ""
    phase_summary: str = ""
    reason: str = ""
    """The paper's one-line reason for the step (``modernize.transforms.reason_of``)."""

    @property
    def status_text(self) -> str:
        return status_text(self.status, self.status_reason)

    @property
    def paper_check(self) -> str:
        if self.paper_kind:
            return f"{self.paper_kind}: {self.paper_verdict}"
        return f"n/a ({self.na_reason})" if self.na_reason else ""

    @property
    def has_result(self) -> bool:
        return self.n > 0


@dataclass(frozen=True)
class SeedResult:
    """One finished job (``seeds.csv``)."""

    step: str
    seed: int
    top1: float
    top5: float


@dataclass(frozen=True)
class Curve:
    """One job's validation top-1 per epoch (the training-curves figure)."""

    step: str
    seed: int
    status: Status
    epoch: tuple[float, ...]
    top1: tuple[float, ...]


@dataclass(frozen=True)
class Agreement:
    compared: int
    """Steps where both this run's delta and the paper's delta exist."""
    sign_matches: int
    mismatches: tuple[str, ...]
    ranked: int
    """Steps with both our top-1 and the paper's (the Spearman sample)."""
    spearman: float


@dataclass(frozen=True)
class Provenance:
    """What the run was: the roadmap, recipe, data, seeds, proxy and where it came from."""

    roadmap: str
    roadmap_path: str
    """The roadmap file as run.json names it ('' for a built-in roadmap)."""
    title: str
    recipe: str
    data: str
    seeds: tuple[int, ...]
    proxy: dict[str, Any]
    """The proxy settings of run.json (``ProxyScale`` fields)."""
    proxy_in_use: dict[str, Any]
    """The settings that changed at least one step (what the run line states)."""
    run_dir: str
    """The run folder, relative to the working folder when inside it."""
    epochs: float = math.nan
    """The recipe's epochs (the plain-words first line of the page); NaN: unknown."""
    train_images: int = 0
    """Training images per epoch (0: the whole training set)."""


@dataclass(frozen=True)
class ReportRecord:
    """Everything a report shows, computed once."""

    schema: int
    run: Provenance
    rows: tuple[Row, ...]
    agreement: Agreement
    fidelity: Fidelity
    seeds: tuple[SeedResult, ...]
    curves: tuple[Curve, ...]
    specs: dict[str, dict[str, Any]]
    """Each step's architecture as drawn on the page (as trained, proxy and data applied)."""
    per_seed: bool = True
    """``seeds`` holds every finished seed (False: migrated from a report that kept only means)."""
    reproduction: Reproduction | None = None
    """The check against a reference report (``report --reference``), when one was asked for."""

    def frame(self) -> pd.DataFrame:
        """The table as ``table.csv`` holds it (one row per step, :data:`~.table.COLUMNS`)."""
        rows = [{c: (r.status_text if c == "status" else r.paper_check if c == "paper_check" else getattr(r, c))
                 for c in COLUMNS} for r in self.rows]
        return pd.DataFrame(rows, columns=COLUMNS)

    def seeds_frame(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(s) for s in self.seeds], columns=["step", "seed", "top1", "top5"])

    @property
    def has_curves(self) -> bool:
        """Whether any job logged more than one evaluation: a curve needs two points."""
        return any(len(c.epoch) > 1 for c in self.curves)

    @property
    def has_paper(self) -> bool:
        return any(not math.isnan(r.paper_top1) for r in self.rows)

    def to_json(self) -> str:
        return dumps(self)

    @classmethod
    def from_json(cls, text: str) -> ReportRecord:
        """A ``report.json`` of the current schema (``migrate.upgrade`` reads older ones)."""
        return loads(cls, text, SCHEMA)


def with_lesson(rows: tuple[Row, ...], roadmap: Any) -> tuple[Row, ...]:
    """``rows`` with each step's phase and reason from ``modernize.transforms`` (the one source
    of truth shared with ``describe``), so the page renders them without the code."""
    from ..transforms import phase_of, reason_of

    steps = {s.name: s for s in roadmap}
    out = []
    for r in rows:
        step = steps.get(r.step)
        phase = phase_of(step) if step is not None else None
        out.append(dataclasses.replace(r, phase=phase.name if phase else "",
                                       phase_section=phase.section if phase else "",
                                       phase_summary=phase.summary if phase else "",
                                       reason=reason_of(step) if step is not None else ""))
    return tuple(out)


# --- JSON <-> frozen dataclasses (NaN as null, enums as their value, tuples as lists) -------------

def dumps(record: Any) -> str:
    """A record (``report.json``, ``compare.json``) as the JSON text its file holds."""
    return json.dumps(encode(record), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def loads(cls: type[T], text: str, schema: int) -> T:
    """The record of type ``cls`` in ``text``, which must carry ``schema``; a ``ValueError``
    naming what differs otherwise."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("schema") != schema:
        raise ValueError(f"schema {data.get('schema') if isinstance(data, dict) else None!r} is not {schema}")
    return typing.cast(T, decode(cls, data))


def encode(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if hasattr(obj, "item"):  # a numpy scalar
        return encode(obj.item())
    return obj


def decode(tp: Any, value: Any, where: str = "record") -> Any:
    """``value`` (parsed JSON) as an instance of the type ``tp``. A value of another type, or a
    non-finite number (``encode`` writes none: NaN is null), is a ``ValueError`` naming its
    place (``rows[2].top1_mean``), so an edited or foreign record file never reaches a table or
    a figure."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        _expect(isinstance(value, dict), where, "an object", value)
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: decode(hints[f.name], value[f.name], f"{where}.{f.name}")
                     for f in dataclasses.fields(tp) if f.name in value})
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return decode(next(a for a in args if a is not type(None)), value, where)
    if tp is float:
        if value is None:
            return math.nan
        _expect(_real(value) and math.isfinite(value), where, "a finite number or null", value)
        return float(value)
    if tp is int:
        _expect(_real(value) and math.isfinite(value) and float(value).is_integer(), where, "an integer", value)
        return int(value)
    if tp is bool or tp is str:
        _expect(isinstance(value, tp), where, "true or false" if tp is bool else "a string", value)
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        valid = [m.value for m in tp]
        _expect(value in valid, where, f"one of {', '.join(map(repr, valid))}", value)
        return tp(value)
    if origin in (tuple, list):
        _expect(isinstance(value, list), where, "a list", value)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            _expect(len(value) == len(args), where, f"a list of {len(args)}", value)
            return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        items = [decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        _expect(isinstance(value, dict), where, "an object", value)
        return {k: decode(args[1], v, f"{where}.{k}") for k, v in value.items()}
    _finite(value, where)
    return value


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _expect(ok: bool, where: str, what: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{where}: expected {what}, got {json.dumps(value, default=repr)[:80]}")


def _finite(value: Any, where: str) -> None:
    """No NaN or infinity anywhere in a free-form value (``proxy``, ``specs``)."""
    if isinstance(value, float):
        _expect(math.isfinite(value), where, "a finite number", value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite(v, f"{where}[{i}]")


__all__ = ["COLUMNS", "RECORD_FILE", "SCHEMA", "Agreement", "Curve", "Provenance", "ReportRecord", "Row", "SeedResult",
           "Status", "decode", "status_text", "encode", "with_lesson"]
