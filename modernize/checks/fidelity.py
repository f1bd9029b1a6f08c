"""Honest agreement statistics: does a small-scale run tell the paper's story?

Only the paper's *robust* steps can be checked for direction: a step is robust when its
top-1 change is at least ``ROBUST_DELTA`` (0.5) points in its own table and has the same sign
in the sister table (Table 10 <-> Table 11). For ResNet-50 -> ConvNeXt-T these are recipe (+),
stage_ratio (+), depthwise (-), widen (+), move_up_dwconv (-), kernel_7 (+), fewer_activations
(+) and separate_downsampling (+). Such a step

* **agrees** when our change has the paper's sign and ``|delta| > 2 SE`` over seeds,
* **disagrees** when it has the opposite sign and ``|delta| > 2 SE``,
* is **inconclusive** otherwise (fewer than 2 seeds on either side, or near chance: below).

The other adopted steps changed the paper's top-1 by less than ``ROBUST_DELTA``, so they are
*equivalence* checks (two one-sided tests, TOST): one **passes** only when the 95 % Welch
interval of our change lies inside ``+-EQUIVALENCE_MARGIN`` (both one-sided tests reject at
2.5 %), **fails** when the whole interval lies outside it, and is **inconclusive** otherwise
(an interval wider than the margin or straddling its edge: too few seeds or too much noise
to say). A step whose top-1 or whose parent's is near chance (within ``CHANCE_POINTS`` of
100 / classes, or on fewer than ``MIN_EVAL_IMAGES`` evaluation images) is inconclusive under
both rules: a change between two guesses says nothing. Branches (kernel 5/9/11) are not counted.

Also: the end-to-end change final step - recipe step with a 95 % Welch interval, and a
one-sided binomial p for the count of robust steps whose sign matches (chance: 1/2 each).
Spearman's rank correlation over accuracy levels stays only as a secondary figure in the
report: levels mix the effects of every earlier step.

Paper deltas and verdicts exist only where the step measures the paper's change: its own spec
and its parent's spec equal, under the run's proxy, the specs that the built-in roadmap using
the paper table builds for its row and for that row's paper parent (:func:`paper_matches`).
Elsewhere the step is ``n/a`` with the reason: the order differs from the paper, an earlier
(user) step changed what it builds on, or its own spec is not the paper's. A table no built-in
roadmap uses has no reference specs: there the table's row order and the absence of user
steps that change the spec on the way are what can be checked.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..fmt import fixed

if TYPE_CHECKING:
    from ..roadmap import Roadmap, Step
    from ..spec import ArchSpec

ROBUST_DELTA = 0.5
"""|paper delta| (top-1 points) from which a step's direction counts as established."""
SE_MULTIPLE = 2.0
"""A change is significant when it exceeds this many standard errors."""
EQUIVALENCE_MARGIN = ROBUST_DELTA
"""Top-1 points: a run's change counts as "no change" when its 95 % interval lies inside +-0.5.
The same line the paper's own table draws between an established change and noise (its seed
std is 0.02-0.18 points; every equivalence row changed by less than 0.5)."""
CONFIDENCE = 0.95
"""The level of every interval: TOST at 2.5 % on each side."""
CHANCE_POINTS = 5.0
"""Top-1 within this many points of 100 / classes counts as chance level."""
MIN_EVAL_IMAGES = 100
"""Fewer evaluation images than this: one image moves top-1 by more than a point."""
NOISE_ALPHA = 0.05
SISTER_ROWS = {"stage_ratio": "stage_ratio_widen"}
"""Rows that are the same change under another name in the sister table (Table 11 changes
depth and width in one step)."""

NOISE_SENTENCE = (f"within noise: Welch's two-sided t-test of the step's seeds against its parent's; \"yes\" "
                  f"(p > {NOISE_ALPHA}) means no significant change was found, not that the change is small "
                  "(needs >= 2 finished seeds on both sides, else n/a).")
ROBUST_SENTENCE = (f"robust check: the paper's change is at least {ROBUST_DELTA} points; the step agrees when "
                   f"the run's change has the paper's sign and exceeds {SE_MULTIPLE:g} standard errors over "
                   "seeds, disagrees with the opposite sign, and is inconclusive otherwise (2 SE is a direction "
                   "test, not the 95 % interval, which the table gives for equivalence steps only).")
EQUIVALENCE_SENTENCE = (f"equivalence check (TOST): the paper's change is below {ROBUST_DELTA} points; the step "
                        f"passes only when the {CONFIDENCE:.0%} interval of the run's change lies inside "
                        f"+-{EQUIVALENCE_MARGIN} points, fails when it lies wholly outside, and is inconclusive "
                        "when it is wider than the margin or crosses its edge; a \"within noise: yes\" step "
                        "can still be inconclusive or fail here.")
CHANCE_SENTENCE = (f"near chance: a step or its parent within {CHANCE_POINTS:g} points of 100 / classes, or "
                   f"scored on fewer than {MIN_EVAL_IMAGES} images, is inconclusive in both checks.")
NA_SENTENCE = ("n/a: the step does not measure the paper's change (its or its parent's spec, under this run's "
               "proxy, is not the paper's roadmap's), so it has no paper delta and is not counted.")
TEST_SENTENCES = (NOISE_SENTENCE, ROBUST_SENTENCE, EQUIVALENCE_SENTENCE, CHANCE_SENTENCE, NA_SENTENCE)
"""One sentence per test, in the words every renderer uses (two cells never seem to contradict)."""


@dataclass(frozen=True)
class StepCheck:
    step: str
    kind: str
    """'robust', 'equivalence', or 'n/a' (not the paper's change: ``na_reason``)."""
    paper_delta: float
    delta: float
    se: float
    verdict: str
    """robust: agrees / disagrees / inconclusive; equivalence: passes / fails / inconclusive; n/a: n/a."""
    low: float = math.nan
    high: float = math.nan
    """The 95 % Welch interval of ``delta`` (NaN with fewer than 2 seeds on either side)."""
    margin: float = math.nan
    """The equivalence margin (equivalence checks only)."""
    why: str = ""
    """Why the verdict is inconclusive, in words ('' otherwise)."""
    na_reason: str = ""
    """Why the step is not checked against the paper (kind 'n/a')."""

    @property
    def label(self) -> str:
        """The table cell: ``robust: agrees`` or ``n/a (changed by user step act)``."""
        return na_label(self.na_reason) if self.kind == "n/a" else f"{self.kind}: {self.verdict}"


@dataclass(frozen=True)
class Fidelity:
    checks: tuple[StepCheck, ...]
    """The robust and equivalence checks (kind 'n/a' steps are in ``not_checked``)."""
    end_to_end: tuple[str, str, float, float, float]
    """(final step, anchor step, difference, 95 % low, 95 % high)."""
    sign_matches: int
    robust: int
    binomial_p: float
    not_checked: tuple[StepCheck, ...] = ()
    """Steps with a paper row that do not measure the paper's change (kind 'n/a', with the reason)."""

    def count(self, kind: str, verdict: str) -> int:
        return sum(c.kind == kind and c.verdict == verdict for c in self.checks)


def robust_verdict(delta: float, se: float, paper_sign: int) -> str:
    """agrees / disagrees / inconclusive by ``|delta| > 2 SE`` (``se`` NaN: fewer than 2 seeds)."""
    if math.isnan(delta) or math.isnan(se) or abs(delta) <= SE_MULTIPLE * se:
        return "inconclusive"
    return "agrees" if (delta > 0) == (paper_sign > 0) else "disagrees"


def equivalence_verdict(low: float, high: float, margin: float = EQUIVALENCE_MARGIN) -> str:
    """TOST: passes when the interval lies inside ``+-margin``, fails when wholly outside it,
    else inconclusive (also with no interval)."""
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if -margin < low and high < margin:
        return "passes"
    if low >= margin or high <= -margin:
        return "fails"
    return "inconclusive"


def verdict(kind: str, delta: float, se: float, paper_sign: int, *, low: float = math.nan,
            high: float = math.nan, margin: float = EQUIVALENCE_MARGIN, near_chance: str = "") -> str:
    """The rule of the module docstring for one step."""
    if near_chance:
        return "inconclusive"
    if kind == "equivalence":
        return equivalence_verdict(low, high, margin)
    return robust_verdict(delta, se, paper_sign)


def _se(std_a: float, n_a: int, std_b: float, n_b: int) -> float:
    if n_a < 2 or n_b < 2 or math.isnan(std_a) or math.isnan(std_b):
        return math.nan
    return math.sqrt(std_a**2 / n_a + std_b**2 / n_b)


def welch_interval(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int,
                   level: float = CONFIDENCE) -> tuple[float, float, float]:
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


# --- chance level -------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalSet:
    """What a run is scored on: classes (chance = 100 / classes) and images (None: unknown)."""

    classes: int | None = None
    images: int | None = None


TEST_SPLITS = {"fashion-mnist": (10, 10_000), "cifar10": (10, 10_000), "cifar100": (100, 10_000)}
"""Classes and test-split size of the named data sets."""


def eval_set_of(data: str, val_images: int = 0) -> EvalSet:
    """The evaluation set of a run's ``--data`` and its recipe's ``val_images`` (0: the whole
    split). ``synthetic:N`` has 10 classes and max(10, N // 4) test images (``data.memory``);
    an image folder is counted on disk (unknown when it is gone)."""
    kind, _, path = str(data).partition(":")
    classes: int | None
    images: int | None
    if kind in TEST_SPLITS:
        classes, images = TEST_SPLITS[kind]
    elif kind == "synthetic":
        classes, images = 10, max(10, int(path or 512) // 4) if (path or "512").isdigit() else None
    elif kind == "imagefolder" and Path(path, "val").is_dir():
        dirs = [d for d in os.scandir(Path(path, "val")) if d.is_dir()]
        classes = len(dirs) or None
        images = sum(len(files) for d in dirs for _, _, files in os.walk(d.path)) or None
    else:
        classes, images = None, None
    if val_images and val_images > 0:
        images = val_images if images is None else min(images, val_images)
    return EvalSet(classes, images)


def run_eval_set(meta: Mapping[str, Any]) -> EvalSet:
    """The evaluation set of a run.json record: its data and the smallest ``val_images`` of its
    recipes (a step's own recipe may score on fewer images)."""
    recipes = [meta.get("recipe") or {}, *(meta.get("step_recipes") or {}).values()]
    counts = []
    for r in recipes:
        v = (r.get("values") or {}).get("val_images", 0) if isinstance(r, Mapping) else 0
        counts.append(int(v) if isinstance(v, (int, float)) and v > 0 else 0)
    positive = [c for c in counts if c > 0]
    return eval_set_of(str(meta.get("data") or ""), min(positive) if positive else 0)


def near_chance(top1: float, evals: EvalSet) -> str:
    """Why ``top1`` says nothing about a change ('' when it can): chance level or a tiny set."""
    if evals.images is not None and evals.images < MIN_EVAL_IMAGES:
        return f"scored on {evals.images} images (< {MIN_EVAL_IMAGES})"
    if evals.classes and not math.isnan(top1) and top1 < 100 / evals.classes + CHANCE_POINTS:
        return f"top-1 {top1:.1f} is within {CHANCE_POINTS:g} points of chance ({100 / evals.classes:.1f})"
    return ""


def _paper_deltas(csv: Path, roadmap_name: str | None) -> dict[str, float]:
    """Each row's change against its parent step's row, the parents taken from the built-in
    roadmap that uses this table."""
    from ..roadmap import builtin_roadmaps, load_roadmap

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


ORDER_DIFFERS = "order differs from the paper"
SPEC_DIFFERS = "spec differs from the paper's"


def na_label(reason: str) -> str:
    """The ``paper_check`` cell of a step that does not measure the paper's change."""
    return f"n/a ({reason})"


def is_na(check: str) -> bool:
    """Whether a ``paper_check`` cell is an n/a (any reason)."""
    return str(check).startswith("n/a")


ORDER_NA = na_label(ORDER_DIFFERS)
"""The paper delta and check of a step whose parent is not the paper's parent for its row."""


def paper_parents(csv: Path) -> dict[str, str | None]:
    """row -> the row the paper measured it from: the built-in roadmap's parents when one uses
    this table (it encodes the paper's branches, e.g. kernel 5/9/11 from kernel 3), else the
    table's order (each row after the last adopted row before it). The table is recognised by
    its contents, so a copy (another checkout, a run folder moved between machines) reads the same."""
    return _paper_parents(Path(csv).read_bytes())


@functools.lru_cache(maxsize=16)
def _reference_roadmap(content: bytes) -> Roadmap | None:
    """The built-in roadmap whose paper table has exactly these bytes: it builds the paper's specs."""
    from ..roadmap import builtin_roadmaps, load_roadmap

    for name in builtin_roadmaps():
        rm = load_roadmap(name)
        if rm.paper_path is not None and rm.paper_path.is_file() and rm.paper_path.read_bytes() == content:
            return rm
    return None


@functools.lru_cache(maxsize=16)
def _paper_parents(content: bytes) -> dict[str, str | None]:
    rm = _reference_roadmap(content)
    if rm is not None:
        return {s.paper_row: (rm[s.parent].paper_row if s.parent else None) for s in rm if s.paper_row}
    rows = pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)
    out: dict[str, str | None] = {}
    last: str | None = None
    for _, r in rows.iterrows():
        out[str(r["row"])] = last
        if str(r.get("adopted", "yes")).strip().lower() not in ("no", "false", "0"):
            last = str(r["row"])
    return out


def proxy_of(record: Any) -> Any:
    """run.json's proxy record as a ``ProxyScale`` (None: none, or a record it cannot rebuild)."""
    from ..errors import ModernizeError
    from ..proxy import ProxyScale

    if not isinstance(record, Mapping):
        return None
    try:
        return ProxyScale(**{f.name: record[f.name] for f in fields(ProxyScale) if f.name in record})
    except (ModernizeError, TypeError):
        return None


def _same(a: ArchSpec, b: ArchSpec, proxy: Any) -> bool:
    """Equal specs as trained: under the run's proxy (two inits the proxy overrides are one)."""
    from ..errors import ModernizeError

    if proxy is not None:
        try:
            return bool(proxy.apply(a) == proxy.apply(b))
        except ModernizeError:  # a spec the proxy cannot shrink: compare as written
            pass
    return a == b


def paper_matches(roadmap: Roadmap, proxy: Any = None) -> dict[str, str]:
    """step -> why it does not measure the paper's change ('' where it does), for the steps with
    a paper row and a parent. Content, not names: the step's spec and its parent's must equal
    the reference roadmap's (the built-in one using this paper table) for the row and for the
    row's paper parent, under ``proxy`` (a ``ProxyScale`` or run.json's record)."""
    if roadmap.paper_path is None or not Path(roadmap.paper_path).is_file():
        return {}
    proxy = proxy_of(proxy) if isinstance(proxy, Mapping) else proxy
    content = Path(roadmap.paper_path).read_bytes()
    ref, parents = _reference_roadmap(content), _paper_parents(content)
    ref_specs = {s.paper_row: s.spec for s in ref if s.paper_row} if ref is not None else {}
    by_name = {s.name: s for s in roadmap}

    def expected(step: Step) -> ArchSpec | None:
        """The spec the paper has for this step (a user step: its parent's, it should change nothing)."""
        if step.paper_row:
            return ref_specs.get(step.paper_row, step.spec if ref is None else None)
        return by_name[step.parent].spec if step.parent else roadmap.base

    def departure(step: Step | None) -> Step | None:
        """The first step from the root to ``step`` whose spec is not the paper's."""
        chain = []
        while step is not None:
            chain.append(step)
            step = by_name.get(step.parent or "")
        for s in reversed(chain):
            want = expected(s)
            if want is None or not _same(s.spec, want, proxy):
                return s
        return None

    out: dict[str, str] = {}
    for step in roadmap:
        row = step.paper_row
        if not row or not step.parent or row not in parents or parents[row] is None:
            continue
        parent, paper_parent = by_name[step.parent], str(parents[row])
        want, want_parent = expected(step), ref_specs.get(paper_parent) if ref is not None else None
        first = departure(parent)
        parent_ok = (first is None and parent.paper_row == paper_parent if ref is None  # no reference specs
                     else want_parent is not None and _same(parent.spec, want_parent, proxy))
        if parent_ok and want is not None and _same(step.spec, want, proxy):
            out[step.name] = ""
        elif parent.paper_row and parent.paper_row != paper_parent:
            out[step.name] = ORDER_DIFFERS
        elif first is not None:
            out[step.name] = (f"changed by user step {first.name}" if not first.paper_row
                              else f"changed by step {first.name}, whose spec differs from the paper's")
        elif not parent_ok:
            out[step.name] = ORDER_DIFFERS
        else:
            out[step.name] = SPEC_DIFFERS
    return out


def mark_paper_order(table: pd.DataFrame, paper_csv: Path | None, roadmap: Roadmap | None = None,
                     proxy: Any = None) -> pd.DataFrame:
    """The report table with ``paper_delta`` kept only where the step measures the paper's change
    (:func:`paper_matches`; without ``roadmap``, where its parent's row is the paper parent);
    elsewhere ``paper_delta`` is NaN and ``paper_check`` is ``n/a (reason)``."""
    if paper_csv is None or not Path(paper_csv).is_file():
        return table
    if roadmap is not None:
        reasons = paper_matches(roadmap, proxy)
    else:
        parents = paper_parents(Path(paper_csv))
        rows = {str(s): str(r or "") for s, r in zip(table["step"], table["paper_row"])}
        reasons = {str(r["step"]): "" if rows.get(str(r["parent"])) == (parents[str(r["paper_row"])] or "")
                   else ORDER_DIFFERS for _, r in table.iterrows()
                   if r["paper_row"] and r["parent"] and str(r["paper_row"]) in parents}
    out = table.copy()
    for i, r in table.iterrows():
        reason = reasons.get(str(r["step"]), "")
        if reason:
            out.loc[i, "paper_delta"] = math.nan
            out.loc[i, "paper_check"] = na_label(reason)
    return out


def has_paper(table: pd.DataFrame) -> bool:
    """Whether any step has a paper number (else a report has no paper columns or sections)."""
    return bool(table["paper_top1"].notna().any())


def proxy_rules_in_use(proxy: Any, specs: Iterable[Any]) -> dict[str, Any]:
    """The rules of a run.json proxy record that change some step's spec (the report header
    names only these: no "layer scale init" when no step has a layer scale)."""
    from ..proxy import low_res, scale

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


def _check(r: Any, p: Any, kind: str, sign: int, evals: EvalSet) -> StepCheck:
    """One step's check against its parent row ``p`` (None: no parent in the table)."""
    delta = float(r["delta"])
    se, low, high = math.nan, math.nan, math.nan
    if p is not None:
        se = _se(r["top1_std"], int(r["n"]), p["top1_std"], int(p["n"]))
        _, low, high = welch_interval(r["top1_mean"], r["top1_std"], int(r["n"]),
                                      p["top1_mean"], p["top1_std"], int(p["n"]))
    chance = next((f"{who} {why}" for who, row in (("step:", r), ("parent:", p)) if row is not None
                   for why in [near_chance(float(row["top1_mean"]), evals)] if why), "")
    v = verdict(kind, delta, se, sign, low=low, high=high, near_chance=chance)
    why = ""
    if v == "inconclusive":
        why = ("near chance (" + chance + ")" if chance else
               "fewer than 2 seeds on a side" if math.isnan(se) else
               "|delta| within 2 SE" if kind == "robust" else
               "interval wider than the margin" if high - low > 2 * EQUIVALENCE_MARGIN else
               "interval crosses the margin's edge")
    return StepCheck(str(r["step"]), kind, float(r["paper_delta"]), delta, se, v, low=low, high=high,
                     margin=EQUIVALENCE_MARGIN if kind == "equivalence" else math.nan, why=why)


def assess(table: pd.DataFrame, paper_csv: Path | None, evals: EvalSet | None = None) -> Fidelity:
    """The checks of the module docstring over a report table (``report.summarize``, after
    :func:`mark_paper_order`); ``evals``: what the run is scored on (chance level)."""
    from scipy import stats

    evals = evals or EvalSet()
    rows = {str(r["step"]): r for _, r in table.iterrows()}
    checks = [_check(rows[step], rows.get(str(rows[step]["parent"])), kind, sign, evals)
              for step, (kind, sign) in paper_kinds(table, paper_csv).items()]
    not_checked = tuple(StepCheck(str(r["step"]), "n/a", math.nan, float(r["delta"]), math.nan, "n/a",
                                  na_reason=str(r["paper_check"])[len("n/a ("):-1])
                        for _, r in table.iterrows() if is_na(str(r.get("paper_check") or "")))
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
    return Fidelity(tuple(checks), e2e, matches, len(robust), binom, not_checked)


def _pm(x: float) -> str:
    return fixed(x, signed=True, empty="n/a")


NO_PAPER = ("## Paper checks", "", "This roadmap has no paper numbers (no `paper = ...` table, or no step with a "
            "`paper_row` in it): no paper columns, deltas or checks.", "")


def fidelity_markdown(fid: Fidelity) -> str:
    final, anchor, diff, lo, hi = fid.end_to_end
    interval = "n/a (needs >= 2 seeds on both)" if math.isnan(lo) else f"[{_pm(lo)}, {_pm(hi)}]"
    p = fixed(fid.binomial_p, 3, empty="n/a")
    n_eq = sum(c.kind == "equivalence" for c in fid.checks)
    lines = ["## Paper checks (robust steps and equivalence steps)", "",
             f"- Robust steps: **{fid.count('robust', 'agrees')} of {fid.robust} agree** (paper's sign, "
             f"|delta| > {SE_MULTIPLE:g} SE), {fid.count('robust', 'disagrees')} disagree, "
             f"{fid.count('robust', 'inconclusive')} inconclusive; sign matches {fid.sign_matches} of "
             f"{fid.robust} (one-sided binomial p = {p}).",
             f"- Equivalence steps (paper change below {ROBUST_DELTA:g} points): {fid.count('equivalence', 'passes')} "
             f"of {n_eq} pass (95 % interval inside +-{EQUIVALENCE_MARGIN:g}), {fid.count('equivalence', 'fails')} "
             f"fail, {fid.count('equivalence', 'inconclusive')} inconclusive.",
             f"- End to end, {final} - {anchor}: **{_pm(diff)}** points, 95 % interval {interval}."]
    if fid.not_checked:
        lines.append("- Not checked (n/a, not counted): " + ", ".join(f"{c.step} ({c.na_reason})"
                                                                      for c in fid.not_checked) + ".")
    lines += ["", "What each test checks:", "", *(f"- {t}" for t in TEST_SENTENCES), "",
              "| step | check | paper delta | delta | 2 SE | 95 % interval | verdict |",
              "|---|---|---:|---:|---:|---|---|"]
    for c in fid.checks:
        two_se = fixed(SE_MULTIPLE * c.se, empty="n/a")
        ci = "-" if c.kind != "equivalence" else "n/a" if math.isnan(c.low) else f"[{_pm(c.low)}, {_pm(c.high)}]"
        shown = f"{c.verdict} ({c.why})" if c.why else c.verdict
        lines.append(f"| {c.step} | {c.kind} | {_pm(c.paper_delta)} | {_pm(c.delta)} | {two_se} | {ci} | {shown} |")
    lines += ["", "Rules: `modernize/checks/fidelity.py` (robust = |paper delta| >= 0.5 and the same sign in the "
              "sister table; SE and intervals over seeds, Welch).", ""]
    return "\n".join(lines)


__all__ = ["CHANCE_POINTS", "CHANCE_SENTENCE", "EQUIVALENCE_MARGIN", "EQUIVALENCE_SENTENCE", "MIN_EVAL_IMAGES",
           "NOISE_ALPHA",
           "NA_SENTENCE", "NOISE_SENTENCE", "NO_PAPER", "ORDER_NA", "ROBUST_SENTENCE", "TEST_SENTENCES", "EvalSet",
           "Fidelity", "StepCheck", "assess", "equivalence_verdict", "eval_set_of", "fidelity_markdown", "has_paper",
           "is_na", "mark_paper_order", "na_label", "near_chance", "paper_kinds", "paper_matches", "paper_parents",
           "proxy_of", "proxy_rules_in_use", "robust_verdict", "run_eval_set", "verdict", "welch_interval"]
