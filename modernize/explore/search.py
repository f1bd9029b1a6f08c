"""The search of ``explore``, pure: the paper's process (try each candidate change on the
current network, keep what helps, repeat) as greedy forward selection over knobs, with the
training injected as a scorer. Nothing here trains, reads or writes files, so the logic is
tested against planted design spaces with a deterministic scorer.

A *knob* is one design decision with one or more *alternatives* (kernel 5/7/9/11); a round
tries every alternative of every knob not yet decided whose preconditions hold on the current
spec, adopts at most one (by the rule) and the knob leaves the search. Ties in the ranking
are broken by fewer GMACs, then by the order of the candidate list (knob, then alternative)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..checks.fidelity import welch_interval
from ..errors import ConfigError, ModernizeError
from ..fmt import fixed
from ..spec import ArchSpec
from ..transforms import get_transform

RULES = ("paper", "strict", "flops")
"""``paper``: the best mean gain over the current spec (its 95 % interval reported); ``strict``:
the best mean gain among those whose lower 95 % bound is above zero; ``flops``: the best mean
gain among candidates within a GMACs budget (those above it are not trained)."""
LEVEL = 0.95

Call = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Alternative:
    """One value of a knob: a name (unique in the candidate set) and the transforms it applies."""

    name: str
    calls: tuple[Call, ...]
    label: str = ""


@dataclass(frozen=True)
class Knob:
    """One design decision; its alternatives compete in a round and at most one is adopted."""

    name: str
    alternatives: tuple[Alternative, ...]


@dataclass(frozen=True)
class Rule:
    name: str = "paper"
    max_gmacs: float | None = None
    """The ``flops`` rule's budget (GMACs per image at the recipe's resolution)."""

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ConfigError(f"--rule {self.name!r}: valid rules are {', '.join(RULES)}")
        if self.name == "flops" and (self.max_gmacs is None or not self.max_gmacs > 0):
            raise ConfigError("--rule flops needs a positive GMACs budget (--max-gmacs)")


@dataclass(frozen=True)
class Budget:
    max_rounds: int | None = None
    max_jobs: int | None = None
    """Distinct (spec, seed) jobs this explore may use, reused ones included, so that the same
    command takes the same decisions whatever a shared store already holds."""


@dataclass(frozen=True)
class Scores:
    """A spec's results: top-1 per seed (None for a failed job), GMACs and parameters."""

    top1: tuple[float | None, ...]
    gmacs: float
    params_m: float
    failed: str = ""
    """Why a seed failed (empty when none did)."""

    @property
    def values(self) -> list[float]:
        return [v for v in self.top1 if v is not None]

    @property
    def mean(self) -> float:
        v = self.values
        return sum(v) / len(v) if v else math.nan

    @property
    def std(self) -> float:
        v = self.values
        if len(v) < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


@dataclass(frozen=True)
class Trial:
    """One candidate of one round and what the rule decided about it."""

    round: int
    knob: str
    alternative: str
    label: str
    key: str | None
    """The content key of its spec (None when it did not apply)."""
    spec: ArchSpec | None
    scores: Scores | None
    diff: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    decision: str = "excluded"
    """adopted, rejected or excluded (not trained: a precondition, the GMACs budget)."""
    why: str = ""
    calls: tuple[Call, ...] = ()
    """The alternative's transforms (for the written roadmap)."""

    @property
    def significant(self) -> bool:
        return self.lo > 0


@dataclass(frozen=True)
class Round:
    index: int
    current: str
    """The content key of the spec the round started from."""
    current_scores: Scores
    trials: tuple[Trial, ...]

    @property
    def adopted(self) -> Trial | None:
        return next((t for t in self.trials if t.decision == "adopted"), None)


@dataclass(frozen=True)
class Search:
    start: ArchSpec
    start_key: str
    rounds: tuple[Round, ...]
    stop: str
    jobs: int
    """Distinct (spec, seed) jobs the search used."""
    path: tuple[Trial, ...] = field(default=())

    @property
    def final(self) -> ArchSpec:
        return self.path[-1].spec if self.path and self.path[-1].spec else self.start


Scorer = Callable[[Mapping[str, ArchSpec]], Mapping[str, Scores]]
"""Trains (or reuses) every spec of a round for every seed: content key -> scores."""
Measure = Callable[[ArchSpec], float]
"""GMACs of a spec as trained (the ``flops`` rule excludes candidates before training)."""


def apply_calls(spec: ArchSpec, calls: Sequence[Call]) -> ArchSpec:
    """The spec after an alternative's transforms (a ``PreconditionError`` when one refuses)."""
    for name, params in calls:
        spec = get_transform(name)(spec, **params)
    return spec


def explore(start: ArchSpec, knobs: Sequence[Knob], *, rule: Rule, seeds: Sequence[int], score: Scorer,
            key: Callable[[ArchSpec], str], budget: Budget = Budget(), measure: Measure | None = None,
            say: Callable[[str], None] = lambda _: None,
            after_round: Callable[[Search], None] | None = None) -> Search:
    """Rounds until nothing is adopted, no candidate applies, or the budget is spent;
    ``after_round`` sees the search so far after each round (its ``stop`` is empty)."""
    current, cur_key = start, key(start)
    left = list(knobs)
    used: set[tuple[str, int]] = set()
    rounds: list[Round] = []
    path: list[Trial] = []
    stop = ""
    while not stop:
        r = len(rounds) + 1
        if budget.max_rounds is not None and r > budget.max_rounds:
            stop = f"round budget: {budget.max_rounds} round(s) done"
            break
        tried, excluded = round_candidates(r, current, left, rule, key, measure)
        if not tried:  # each candidate's reason kept: an explore that trains nothing says why
            whys = [f"{t.alternative}: {t.why}" for t in excluded]
            more = f"; and {len(whys) - 3} more" if len(whys) > 3 else ""
            stop = f"round {r}: no candidate applies to the current spec ({'; '.join(whys[:3])}{more})"
            break
        keys = {cur_key: current} | {t.key: t.spec for t in tried if t.key and t.spec}
        new = {(k, s) for k in keys for s in seeds} - used
        if budget.max_jobs is not None and len(used) + len(new) > budget.max_jobs:
            stop = (f"job budget: round {r} needs {len(new)} more job(s), {budget.max_jobs - len(used)} of "
                    f"{budget.max_jobs} left")
            break
        say(f"round {r}: {len(tried)} candidate(s) on {cur_key}, {len(new)} job(s) not used before")
        scores = score(keys)
        used |= new
        decided = decide([dataclasses.replace(t, scores=scores[t.key]) for t in tried if t.key],
                         scores[cur_key], rule)
        rnd = Round(r, cur_key, scores[cur_key], tuple(_in_order(decided + excluded, left)))
        rounds.append(rnd)
        won = rnd.adopted
        if after_round is not None:
            after_round(Search(start, key(start), tuple(rounds), "", len(used), (*path, *([won] if won else []))))
        if won is None:
            stop = f"round {r}: nothing adopted under rule '{rule.name}'"
            break
        path.append(won)
        assert won.spec is not None and won.key is not None
        current, cur_key = won.spec, won.key
        left = [k for k in left if k.name != won.knob]
        if not left:
            stop = f"round {r}: every knob decided"
    return Search(start, key(start), tuple(rounds), stop, len(used), tuple(path))


def _in_order(trials: list[Trial], knobs: Sequence[Knob]) -> list[Trial]:
    order = {(k.name, a.name): i for i, (k, a) in enumerate((k, a) for k in knobs for a in k.alternatives)}
    return sorted(trials, key=lambda t: order[(t.knob, t.alternative)])


def round_candidates(r: int, current: ArchSpec, knobs: Sequence[Knob], rule: Rule, key: Callable[[ArchSpec], str],
                measure: Measure | None) -> tuple[list[Trial], list[Trial]]:
    """The alternatives that apply to ``current`` (to be trained) and those that do not, with why."""
    tried, excluded = [], []
    cur_key = key(current)
    for knob in knobs:
        for alt in knob.alternatives:
            base = dict(round=r, knob=knob.name, alternative=alt.name, label=alt.label or alt.name, calls=alt.calls)
            try:
                spec = apply_calls(current, alt.calls)
            except ModernizeError as exc:
                excluded.append(Trial(key=None, spec=None, scores=None, why=f"not applicable: {exc}", **base))
                continue
            k = key(spec)
            if k == cur_key:
                excluded.append(Trial(key=None, spec=None, scores=None, why="changes nothing", **base))
                continue
            if rule.name == "flops" and measure is not None:
                g = measure(spec)
                assert rule.max_gmacs is not None
                if g > rule.max_gmacs:
                    excluded.append(Trial(key=k, spec=None, scores=Scores((), g, math.nan),
                                          why=f"over the GMACs budget ({g:.4g} > {rule.max_gmacs:.4g}); not trained",
                                          **base))
                    continue
            tried.append(Trial(key=k, spec=spec, scores=None, **base))
    return tried, excluded


def decide(trials: Sequence[Trial], current: Scores, rule: Rule) -> list[Trial]:
    """Each trained candidate's difference from the current spec (Welch 95 % interval) and the
    rule's decision: at most one adopted, ranked by mean gain, then fewer GMACs, then list order."""
    rows = []
    for t in trials:
        s = t.scores
        assert s is not None
        diff, lo, hi = welch_interval(s.mean, s.std, len(s.values), current.mean, current.std, len(current.values))
        rows.append(dataclasses.replace(t, diff=diff, lo=lo, hi=hi))
    eligible = []
    out = []
    for i, t in enumerate(rows):
        why = _ineligible(t, current, rule)
        if why:
            out.append(dataclasses.replace(t, decision="rejected", why=why))
        else:
            eligible.append((i, t))
            out.append(t)
    if not eligible:
        return out
    rank = sorted(eligible, key=lambda it: (-it[1].diff, it[1].scores.gmacs if it[1].scores else 0.0, it[0]))
    best_i, best = rank[0]
    sig = "significant" if best.significant else "not significant"
    interval = "n/a" if math.isnan(best.lo) else f"[{fixed(best.lo, signed=True)}, {fixed(best.hi, signed=True)}]"
    tie = [t for _, t in rank[1:] if t.diff == best.diff]
    out[best_i] = dataclasses.replace(best, decision="adopted", why=(
        f"adopted: best mean gain {fixed(best.diff, signed=True)} (95 % {interval}, {sig} at 95 %)"
        + (f"; tied with {', '.join(t.alternative for t in tie)}, fewer GMACs / earlier in the list wins" if tie
           else "")))
    for i, t in rank[1:]:
        out[i] = dataclasses.replace(t, decision="rejected",
                                     why=f"gain {fixed(t.diff, signed=True)} below the adopted {best.alternative} "
                                     f"({fixed(best.diff, signed=True)})"
                                     if t.diff < best.diff else f"tied with the adopted {best.alternative}; "
                                     "fewer GMACs / earlier in the list wins")
    return out


def _ineligible(t: Trial, current: Scores, rule: Rule) -> str:
    """Why the rule cannot adopt ``t`` ("" when it can)."""
    s = t.scores
    assert s is not None
    if s.failed or not s.values:
        return f"failed: {s.failed or 'no finished seed'}"
    if current.failed or not current.values:
        return "the current spec has no finished seed to compare with"
    if rule.name == "strict":
        if math.isnan(t.lo):
            return "no interval (needs >= 2 finished seeds on both sides); the strict rule adopts none"
        if t.lo <= 0:
            return f"lower 95 % bound {fixed(t.lo, signed=True)} <= 0 (strict rule)"
        return ""
    if not t.diff > 0:
        return f"no mean gain ({fixed(t.diff, signed=True)})"
    return ""
