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

from .errors import ConfigError
from .files import atomic_write_text
from .fmt import fixed

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


def read_reference(folder: Path) -> pd.DataFrame:
    """A reference report folder as step -> mean, std, n: from ``seeds.csv``, else ``table.csv``."""
    folder = Path(folder)
    seeds, table = folder / SEEDS_FILE, folder / "table.csv"
    try:
        if seeds.is_file():
            frame = pd.read_csv(seeds)
            missing = set(SEEDS_COLUMNS[:3]) - set(frame.columns)
            if missing:
                raise ConfigError(f"reference '{seeds}': no column(s) {', '.join(sorted(missing))}")
            frame["step"] = frame["step"].astype(str)
            frame["top1"] = pd.to_numeric(frame["top1"], errors="coerce")
            return _stats(frame.dropna(subset=["top1"]))
        if table.is_file():
            frame = pd.read_csv(table)
            missing = {"step", "top1_mean", "top1_std", "n"} - set(frame.columns)
            if missing:
                raise ConfigError(f"reference '{table}': no column(s) {', '.join(sorted(missing))}")
            frame = frame[pd.to_numeric(frame["n"], errors="coerce").fillna(0) > 0]
            return pd.DataFrame({"mean": pd.to_numeric(frame["top1_mean"], errors="coerce").to_numpy(),
                                 "std": pd.to_numeric(frame["top1_std"], errors="coerce").to_numpy(),
                                 "n": frame["n"].astype(int).to_numpy()}, index=frame["step"].astype(str))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"reference '{folder}': unreadable table ({str(exc).splitlines()[0]})") from None
    raise ConfigError(f"reference '{folder}': neither {SEEDS_FILE} nor table.csv there "
                      "(give a report folder, e.g. reports/resnet50_to_convnext_t)")


def pooled_spread(ref: pd.DataFrame) -> float:
    """sqrt of the mean per-step seed variance, over steps with n >= 2 and a finite std."""
    usable = ref[(ref["n"] >= 2) & ref["std"].map(lambda s: math.isfinite(float(s)))]
    if usable.empty:
        raise ConfigError("reference: no step has two or more seeds, so it has no seed spread to compare against")
    return float(math.sqrt((usable["std"].astype(float) ** 2).mean()))


def check_reproduction(seeds: pd.DataFrame, reference: Path) -> Reproduction:
    """Compare a run's per-seed top-1 (:func:`seeds_frame`) with the reference folder's."""
    ref = read_reference(reference)
    spread = pooled_spread(ref)
    run = _stats(seeds) if not seeds.empty else pd.DataFrame(columns=["mean", "std", "n"])
    checks = []
    for step in list(ref.index) + [s for s in run.index if s not in ref.index]:
        ref_n = int(ref.loc[step, "n"]) if step in ref.index else 0
        run_n = int(run.loc[step, "n"]) if step in run.index else 0
        tol = K_SIGMA * spread * math.sqrt(1 / max(ref_n, 1) + 1 / max(run_n, 1))
        checks.append(StepReproduction(step=str(step), ref_mean=float(ref.loc[step, "mean"]) if ref_n else math.nan,
                                ref_n=ref_n, run_mean=float(run.loc[step, "mean"]) if run_n else math.nan,
                                run_n=run_n, tolerance=tol))
    return Reproduction(reference=str(reference), spread=spread, steps=tuple(checks))


def write_reproduction(check: Reproduction, out: Path) -> Path:
    path = Path(out) / "reproduction.md"
    atomic_write_text(path, check.markdown())
    return path


__all__ = ["K_SIGMA", "Reproduction", "SEEDS_FILE", "Match", "StepReproduction", "check_reproduction", "pooled_spread",
           "read_reference", "write_reproduction"]
