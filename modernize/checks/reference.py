"""Did this run reproduce a reference? Step by step, against the spread between seeds.

A committed report (``reports/<roadmap>/``) is a *reference*: its ``seeds.csv`` holds every
step's per-seed top-1. Digits differ between machines (another CPU rounds differently, and a
different rounding is, for training, a different random draw), so a run on another machine is
compared as a new set of seeds: a step *reproduces* when its mean is within

    tolerance = K * s * sqrt(1/n_ref + 1/n_run)

of the reference mean, where ``s`` is the reference's pooled per-seed standard deviation
(over every step with two or more seeds: one step's two seeds are too few to estimate a
spread) and ``K`` = :data:`K_SIGMA`. A reference without ``seeds.csv`` (older reports) is read
from ``table.csv``'s mean, std and n.

The check is a report-layer function: it reads tables, never a run's engine.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..csvtable import PERCENT, Column, read_checked, where
from ..errors import ConfigError
from ..files import atomic_write_text
from ..fmt import fixed

K_SIGMA = 3.0
"""Three standard errors: a few-point shift of one step is flagged, a new machine's digits are not."""

SEEDS_FILE = "seeds.csv"
SEEDS_COLUMNS = ["step", "seed", "top1", "top5"]


class Match(enum.StrEnum):
    """How one step of a run stands against the reference."""

    WITHIN = "within"
    OUTSIDE = "outside"
    NOT_IN_RUN = "missing in this run"
    NOT_IN_REFERENCE = "not in the reference"


@dataclass(frozen=True)
class StepReproduction:
    step: str
    ref_mean: float
    ref_n: int
    run_mean: float
    run_n: int
    tolerance: float

    @property
    def diff(self) -> float:
        return self.run_mean - self.ref_mean

    @property
    def status(self) -> Match:
        if self.run_n == 0:
            return Match.NOT_IN_RUN
        if self.ref_n == 0:
            return Match.NOT_IN_REFERENCE
        return Match.WITHIN if abs(self.diff) <= self.tolerance else Match.OUTSIDE


@dataclass(frozen=True)
class Reproduction:
    """The reproduction check's record (``reproduction.md`` renders it; ``report.json`` keeps it)."""

    reference: str
    spread: float
    """The reference's pooled per-seed standard deviation (top-1 points)."""
    steps: tuple[StepReproduction, ...]

    @property
    def outside(self) -> list[StepReproduction]:
        return [c for c in self.steps if c.status is Match.OUTSIDE]

    @property
    def compared(self) -> list[StepReproduction]:
        return [c for c in self.steps if c.status in (Match.WITHIN, Match.OUTSIDE)]

    def summary(self) -> str:
        """One line: ``17 of 17 steps within the reference's seed spread (...)``."""
        within = len(self.compared) - len(self.outside)
        line = (f"reproduction: {within} of {len(self.compared)} steps within the reference's seed spread "
                f"(|mean - reference| <= {K_SIGMA:g} x {fixed(self.spread)} x sqrt(1/n_ref + 1/n_run); "
                f"reference {self.reference})")
        if self.outside:
            line += "; outside: " + ", ".join(f"{c.step} {fixed(c.diff, signed=True)} (tolerance "
                                             f"{fixed(c.tolerance)})" for c in self.outside)
        others = [c for c in self.steps if c.status not in (Match.WITHIN, Match.OUTSIDE)]
        if others:
            line += "; " + ", ".join(f"{c.step} {c.status.value}" for c in others)
        return line

    def markdown(self) -> str:
        lines = [f"# Reproduction check against {self.reference}", "", self.summary(), "",
                 "| step | reference mean (n) | this run mean (n) | difference | tolerance | status |",
                 "|---|---|---|---|---|---|"]
        for c in self.steps:
            ref = f"{fixed(c.ref_mean)} ({c.ref_n})" if c.ref_n else "-"
            run = f"{fixed(c.run_mean)} ({c.run_n})" if c.run_n else "-"
            diff = fixed(c.diff, signed=True) if c.ref_n and c.run_n else "-"
            lines.append(f"| {c.step} | {ref} | {run} | {diff} | {fixed(c.tolerance)} | {c.status.value} |")
        return "\n".join(lines) + "\n"


def _stats(seeds: pd.DataFrame) -> pd.DataFrame:
    """step -> mean, std, n (steps in first-seen order)."""
    g = seeds.groupby("step", sort=False)["top1"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()})


SEEDS_RULES = (Column("step", "text"), Column("seed", "whole", low=0), Column("top1", **PERCENT),
               Column("top5", **PERCENT, blank=True, required=False))
"""A reference's seeds.csv: one row per (step, seed), accuracies in percent."""
TABLE_RULES = (Column("step", "text"), Column("n", "whole", low=0), Column("top1_mean", **PERCENT, blank=True),
               Column("top1_std", low=0.0, blank=True))
"""A table-only reference (table.csv): per step mean, std and seed count."""


def read_reference(folder: Path) -> pd.DataFrame:
    """A reference report folder as step -> mean, std, n: from ``seeds.csv``, else ``table.csv``.
    Every row is validated (``modernize.csvtable``): a bad one is one line naming the file and
    row, never dropped or counted twice."""
    folder = Path(folder)
    seeds, table = folder / SEEDS_FILE, folder / "table.csv"
    if seeds.is_file():
        frame = read_checked(seeds, "reference seeds table", SEEDS_RULES, key=("step", "seed"))
        return _stats(frame)
    if table.is_file():
        return _table_reference(read_checked(table, "reference table", TABLE_RULES, key=("step",)), table)
    raise ConfigError(f"reference '{folder}': neither {SEEDS_FILE} nor table.csv there "
                      "(give a report folder, e.g. reports/resnet50_to_convnext_t)")


def _table_reference(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """table.csv rows as mean, std, n: a step with n = 0 (no finished seed) must have no mean and
    is left out; n >= 1 needs a mean, n >= 2 a std."""
    for i, r in frame.iterrows():
        n, mean, std = int(r["n"]), float(r["top1_mean"]), float(r["top1_std"])
        problem = ("n = 0 but top1_mean is given (n must be a whole number >= 1 for a step with a mean)"
                   if n == 0 and math.isfinite(mean) else
                   f"n = {n} but top1_mean is empty" if n >= 1 and not math.isfinite(mean) else
                   f"n = {n} but top1_std is empty (a step with two or more seeds has a std)"
                   if n >= 2 and not math.isfinite(std) else "")
        if problem:
            raise ConfigError(f"{path}: {where(int(str(i)))}: {problem}")
    kept = frame[frame["n"] >= 1]
    return pd.DataFrame({"mean": kept["top1_mean"].to_numpy(float), "std": kept["top1_std"].to_numpy(float),
                         "n": kept["n"].astype(int).to_numpy()}, index=kept["step"].astype(str))


def pooled_spread(ref: pd.DataFrame) -> float:
    """sqrt of the mean per-step seed variance, over steps with n >= 2 and a finite std."""
    usable = ref[(ref["n"] >= 2) & ref["std"].map(lambda s: math.isfinite(float(s)))]
    if usable.empty:
        raise ConfigError("reference: no step has two or more seeds, so it has no seed spread to compare against")
    return float(math.sqrt((usable["std"].astype(float) ** 2).mean()))


@dataclass(frozen=True)
class Reference:
    """A reference folder read and checked completely: what the check compares against, held in
    memory so that writing a report can never change it before it is read."""

    folder: Path
    steps: pd.DataFrame
    """step -> mean, std, n (:func:`read_reference`)."""
    spread: float


def load_reference(folder: Path, *, out: Path | None = None) -> Reference:
    """Read, validate and hold a reference before a report is written into ``out``. A reference
    that is the output folder or inside it is refused: the report would overwrite (or replace)
    the very numbers it is checked against."""
    folder = Path(folder)
    if out is not None and _same_or_inside(folder, Path(out)):
        raise ConfigError(f"--reference '{folder}' is the report's output folder '{out}' or inside it: the "
                          "report would overwrite the reference it is checked against (give another --out)")
    steps = read_reference(folder)
    return Reference(folder=folder, steps=steps, spread=pooled_spread(steps))


def _same_or_inside(path: Path, folder: Path) -> bool:
    try:
        path, folder = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):  # a link loop: compare as given
        pass
    return path == folder or folder in path.parents


def check_reproduction(seeds: pd.DataFrame, reference: Path | Reference) -> Reproduction:
    """Compare a run's per-seed top-1 (:func:`seeds_frame`) with a reference folder's (read
    here) or an already loaded :class:`Reference`."""
    ref_data = reference if isinstance(reference, Reference) else load_reference(reference)
    ref, spread = ref_data.steps, ref_data.spread
    run = _stats(seeds) if not seeds.empty else pd.DataFrame(columns=["mean", "std", "n"])
    checks = []
    for step in list(ref.index) + [s for s in run.index if s not in ref.index]:
        ref_n = int(ref.loc[step, "n"]) if step in ref.index else 0
        run_n = int(run.loc[step, "n"]) if step in run.index else 0
        tol = K_SIGMA * spread * math.sqrt(1 / max(ref_n, 1) + 1 / max(run_n, 1))
        checks.append(StepReproduction(step=str(step), ref_mean=float(ref.loc[step, "mean"]) if ref_n else math.nan,
                                ref_n=ref_n, run_mean=float(run.loc[step, "mean"]) if run_n else math.nan,
                                run_n=run_n, tolerance=tol))
    return Reproduction(reference=str(ref_data.folder), spread=spread, steps=tuple(checks))


def write_reproduction(check: Reproduction, out: Path) -> Path:
    path = Path(out) / "reproduction.md"
    atomic_write_text(path, check.markdown())
    return path


__all__ = ["K_SIGMA", "Match", "Reference", "Reproduction", "SEEDS_FILE", "StepReproduction", "check_reproduction",
           "load_reference", "pooled_spread", "read_reference", "write_reproduction"]
