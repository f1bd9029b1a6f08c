"""Honest agreement statistics: does a small-scale run tell the paper's story?

Only the paper's *robust* steps can be checked for direction: a step is robust when its
top-1 change is at least ``ROBUST_DELTA`` (0.5) points in its own table and has the same sign
in the sister table (Table 10 <-> Table 11). For ResNet-50 -> ConvNeXt-T these are recipe (+),
stage_ratio (+), depthwise (-), widen (+), move_up_dwconv (-), kernel_7 (+), fewer_activations
(+) and separate_downsampling (+). Such a step

* **agrees** when our change has the paper's sign and ``|delta| > 2 SE`` over seeds,
* **disagrees** when it has the opposite sign and ``|delta| > 2 SE``,
* is **inconclusive** otherwise (or with fewer than 2 seeds on either side).

The other adopted steps changed the paper's top-1 by less than its seed noise, so they are
*equivalence* checks: one **passes** unless our change is significantly negative
(``delta < -2 SE``). Branches (kernel 5/9/11) are not counted.

Also: the end-to-end change final step - recipe step with a 95 % Welch interval, and a
one-sided binomial p for the count of robust steps whose sign matches (chance: 1/2 each).
Spearman's rank correlation over accuracy levels stays only as a secondary figure in the
report: levels mix the effects of every earlier step.

Paper deltas and verdicts exist only where a step's parent is the paper's parent for that row
(``paper_parents``: the parents of the built-in roadmap that uses the paper table, else the
table's row order, a row following the last adopted row before it). A reordered roadmap's step
measured from another parent gets ``ORDER_NA`` instead: the paper never measured that change.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .fmt import fixed

ROBUST_DELTA = 0.5
"""|paper delta| (top-1 points) from which a step's direction counts as established."""
SE_MULTIPLE = 2.0
"""A change is significant when it exceeds this many standard errors."""
SISTER_ROWS = {"stage_ratio": "stage_ratio_widen"}
"""Rows that are the same change under another name in the sister table (Table 11 changes
depth and width in one step)."""


@dataclass(frozen=True)
class StepCheck:
    step: str
    kind: str
    """'robust' or 'equivalence'."""
    paper_delta: float
    delta: float
    se: float
    verdict: str
    """robust: agrees / disagrees / inconclusive; equivalence: passes / fails / inconclusive."""


@dataclass(frozen=True)
class Fidelity:
    checks: tuple[StepCheck, ...]
    end_to_end: tuple[str, str, float, float, float]
    """(final step, anchor step, difference, 95 % low, 95 % high)."""
    sign_matches: int
    robust: int
    binomial_p: float

    def count(self, kind: str, verdict: str) -> int:
        return sum(c.kind == kind and c.verdict == verdict for c in self.checks)


def verdict(kind: str, delta: float, se: float, paper_sign: int) -> str:
    """The rule of the module docstring for one step (``se`` NaN: fewer than 2 seeds)."""
    if math.isnan(delta) or math.isnan(se):
        return "inconclusive"
    significant = abs(delta) > SE_MULTIPLE * se
    if kind == "equivalence":
        return "fails" if (significant and delta < 0) else "passes"
    if not significant:
        return "inconclusive"
    return "agrees" if (delta > 0) == (paper_sign > 0) else "disagrees"


def _se(std_a: float, n_a: int, std_b: float, n_b: int) -> float:
    if n_a < 2 or n_b < 2 or math.isnan(std_a) or math.isnan(std_b):
        return math.nan
    return math.sqrt(std_a**2 / n_a + std_b**2 / n_b)


def welch_interval(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int,
                   level: float = 0.95) -> tuple[float, float, float]:
    """(difference a - b, low, high) from summary statistics (Welch-Satterthwaite df)."""
    from scipy import stats

    diff = mean_a - mean_b
    se = _se(std_a, n_a, std_b, n_b)
    if math.isnan(se):
        return diff, math.nan, math.nan
    if se == 0:
        return diff, diff, diff
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    df = (va + vb) ** 2 / ((va**2 / (n_a - 1) if va else 0.0) + (vb**2 / (n_b - 1) if vb else 0.0))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return diff, diff - half, diff + half


def _paper_deltas(csv: Path, roadmap_name: str | None) -> dict[str, float]:
    """Each row's change against its parent step's row, the parents taken from the built-in
    roadmap that uses this table."""
    from .roadmap import builtin_roadmaps, load_roadmap

    paper = pd.read_csv(csv).set_index("row")["paper_top1"].to_dict()
    for name in builtin_roadmaps():
        rm = load_roadmap(name)
        if rm.paper_path is not None and rm.paper_path.resolve() == csv.resolve():
            out = {}
            for s in rm:
                if s.parent and s.paper_row in paper and rm[s.parent].paper_row in paper:
                    out[s.paper_row] = float(paper[s.paper_row]) - float(paper[rm[s.parent].paper_row])
            return out
    return {}


ORDER_NA = "n/a (order differs from the paper)"
"""The paper delta and check of a step whose parent is not the paper's parent for its row."""


def paper_parents(csv: Path) -> dict[str, str | None]:
    """row -> the row the paper measured it from: the built-in roadmap's parents when one uses
    this table (it encodes the paper's branches, e.g. kernel 5/9/11 from kernel 3), else the
    table's order (each row after the last adopted row before it). The table is recognised by
    its contents, so a copy (another checkout, a run folder moved between machines) reads the same."""
    return _paper_parents(Path(csv).read_bytes())


@functools.lru_cache(maxsize=16)
def _paper_parents(content: bytes) -> dict[str, str | None]:
    from .roadmap import builtin_roadmaps, load_roadmap

    for name in builtin_roadmaps():
        rm = load_roadmap(name)
        if rm.paper_path is not None and rm.paper_path.is_file() and rm.paper_path.read_bytes() == content:
            return {s.paper_row: (rm[s.parent].paper_row if s.parent else None) for s in rm if s.paper_row}
    rows = pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)
    out: dict[str, str | None] = {}
    last: str | None = None
    for _, r in rows.iterrows():
        out[str(r["row"])] = last
        if str(r.get("adopted", "yes")).strip().lower() not in ("no", "false", "0"):
            last = str(r["row"])
    return out


def mark_paper_order(table: pd.DataFrame, paper_csv: Path | None) -> pd.DataFrame:
    """The report table with ``paper_delta`` kept only where the step's parent is the paper's
    parent for its row; elsewhere ``paper_delta`` is NaN and ``paper_check`` is ``ORDER_NA``."""
    if paper_csv is None or not Path(paper_csv).is_file():
        return table
    parents = paper_parents(Path(paper_csv))
    rows = {str(s): str(r or "") for s, r in zip(table["step"], table["paper_row"])}
    out = table.copy()
    for i, r in table.iterrows():
        row = str(r["paper_row"] or "")
        if not row or not r["parent"] or row not in parents:
            continue
        if rows.get(str(r["parent"])) != (parents[row] or ""):
            out.loc[i, "paper_delta"] = math.nan
            out.loc[i, "paper_check"] = ORDER_NA
    return out


def has_paper(table: pd.DataFrame) -> bool:
    """Whether any step has a paper number (else a report has no paper columns or sections)."""
    return bool(table["paper_top1"].notna().any())


def proxy_rules_in_use(proxy: Any, specs: Iterable[Any]) -> dict[str, Any]:
    """The rules of a run.json proxy record that change some step's spec (the report header
    names only these: no "layer scale init" when no step has a layer scale)."""
    from .proxy import low_res, scale

    if not isinstance(proxy, dict):
        return {}
    specs = list(specs)
    width, depth, stride = proxy.get("width", 1), proxy.get("depth", 1), proxy.get("stem_stride")
    used: dict[str, Any] = {}
    try:
        if width not in (None, 1, 1.0) and any(scale(s, width=width) != s for s in specs):
            used["width"] = width
        if depth not in (None, 1, 1.0) and any(scale(s, depth=depth) != s for s in specs):
            used["depth"] = depth
        if stride is not None and any(low_res(s, stem_stride=stride) != s for s in specs):
            used["stem_stride"] = stride
    except Exception:  # an edited run.json: name the rules as recorded rather than fail the report
        used = {k: proxy[k] for k in ("width", "depth", "stem_stride") if proxy.get(k) not in (None, 1, 1.0)}
    if proxy.get("init") not in (None, "paper") and "width" in used:
        used["init"] = proxy["init"]
    if proxy.get("layer_scale") is not None and any(getattr(s, "layer_scale", 0) > 0 for s in specs):
        used["layer_scale"] = proxy["layer_scale"]
    return used


def paper_kinds(table: pd.DataFrame, paper_csv: Path | None) -> dict[str, tuple[str, int]]:
    """step -> ('robust', sign) or ('equivalence', 0) for the adopted steps with a parent."""
    sister: dict[str, float] = {}
    if paper_csv is not None and paper_csv.is_file():
        others = [p for p in sorted(paper_csv.parent.glob("paper_roadmap_*.csv")) if p.name != paper_csv.name]
        for other in others:
            sister |= _paper_deltas(other, None)
    out: dict[str, tuple[str, int]] = {}
    for _, r in table.iterrows():
        if not bool(r["adopted"]) or not r["parent"] or math.isnan(r["paper_delta"]):
            continue
        pd_ = float(r["paper_delta"])
        row = str(r["paper_row"] or r["step"])
        twin = sister.get(row, sister.get(SISTER_ROWS.get(row, ""), sister.get(
            next((k for k, v in SISTER_ROWS.items() if v == row), ""), math.nan)))
        same_sign = math.isnan(twin) or (twin > 0) == (pd_ > 0)
        if abs(pd_) >= ROBUST_DELTA and same_sign:
            out[str(r["step"])] = ("robust", 1 if pd_ > 0 else -1)
        else:
            out[str(r["step"])] = ("equivalence", 0)
    return out


def assess(table: pd.DataFrame, paper_csv: Path | None) -> Fidelity:
    """The checks of the module docstring over a report table (``report.summarize``)."""
    from scipy import stats

    rows = {str(r["step"]): r for _, r in table.iterrows()}
    checks = []
    for step, (kind, sign) in paper_kinds(table, paper_csv).items():
        r = rows[step]
        p = rows.get(str(r["parent"]))
        se = _se(r["top1_std"], int(r["n"]), p["top1_std"], int(p["n"])) if p is not None else math.nan
        checks.append(StepCheck(step, kind, float(r["paper_delta"]), float(r["delta"]), se,
                                verdict(kind, float(r["delta"]), se, sign)))
    robust = [c for c in checks if c.kind == "robust"]
    matches = sum(not math.isnan(c.delta) and (c.delta > 0) == (c.paper_delta > 0) and c.delta != 0
                  for c in robust)
    binom = float(stats.binomtest(matches, len(robust), 0.5, alternative="greater").pvalue) if robust else math.nan
    adopted = [str(r["step"]) for _, r in table.iterrows() if bool(r["adopted"])]
    anchor = next((s for s in adopted if str(rows[s]["paper_row"]) == "recipe"), adopted[0] if adopted else "")
    final = adopted[-1] if adopted else ""
    e2e: tuple[str, str, float, float, float] = (final, anchor, math.nan, math.nan, math.nan)
    if final and anchor:
        a, b = rows[final], rows[anchor]
        e2e = (final, anchor, *welch_interval(a["top1_mean"], a["top1_std"], int(a["n"]),
                                              b["top1_mean"], b["top1_std"], int(b["n"])))
    return Fidelity(tuple(checks), e2e, matches, len(robust), binom)


def _pm(x: float) -> str:
    return fixed(x, signed=True, empty="n/a")


NO_PAPER = ("## Paper checks", "", "This roadmap has no paper numbers (no `paper = ...` table, or no step with a "
            "`paper_row` in it): no paper columns, deltas or checks.", "")


def fidelity_markdown(fid: Fidelity) -> str:
    final, anchor, diff, lo, hi = fid.end_to_end
    interval = "n/a (needs >= 2 seeds on both)" if math.isnan(lo) else f"[{_pm(lo)}, {_pm(hi)}]"
    p = fixed(fid.binomial_p, 3, empty="n/a")
    lines = ["## Paper checks (robust steps and equivalence steps)", "",
             f"- Robust steps: **{fid.count('robust', 'agrees')} of {fid.robust} agree** (paper's sign, "
             f"|delta| > {SE_MULTIPLE:g} SE), {fid.count('robust', 'disagrees')} disagree, "
             f"{fid.count('robust', 'inconclusive')} inconclusive; sign matches {fid.sign_matches} of "
             f"{fid.robust} (one-sided binomial p = {p}).",
             f"- Equivalence steps (paper change within its noise): {fid.count('equivalence', 'passes')} of "
             f"{sum(c.kind == 'equivalence' for c in fid.checks)} pass (not significantly negative), "
             f"{fid.count('equivalence', 'fails')} fail.",
             f"- End to end, {final} - {anchor}: **{_pm(diff)}** points, 95 % interval {interval}.", "",
             "| step | check | paper delta | delta | 2 SE | verdict |", "|---|---|---:|---:|---:|---|"]
    for c in fid.checks:
        two_se = fixed(SE_MULTIPLE * c.se, empty="n/a")
        lines.append(f"| {c.step} | {c.kind} | {_pm(c.paper_delta)} | {_pm(c.delta)} | {two_se} | {c.verdict} |")
    lines += ["", "Rules: `modernize/fidelity.py` (robust = |paper delta| >= 0.5 and the same sign in the sister "
              "table; SE over seeds, Welch).", ""]
    return "\n".join(lines)


__all__ = ["NO_PAPER", "ORDER_NA", "Fidelity", "StepCheck", "assess", "fidelity_markdown", "has_paper",
           "mark_paper_order", "paper_kinds", "paper_parents", "proxy_rules_in_use", "verdict", "welch_interval"]
