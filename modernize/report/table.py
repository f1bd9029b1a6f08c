"""The report's numbers: one row per roadmap step (seed statistics, delta against the parent,
noise test, paper values, throughput) and what follows from the table -- the paper checks
(``modernize.fidelity``) and the secondary agreement figures -- computed once per report
(:func:`analyze`) and handed to every renderer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..fidelity import NOISE_ALPHA, NOISE_SENTENCE, Fidelity, assess, mark_paper_order, run_eval_set
from ..stats import spearman, welch_p
from .load import Run

NOISE_RULE = NOISE_SENTENCE.rstrip(".")  # the words of fidelity.TEST_SENTENCES

COLUMNS = ["step", "change", "adopted", "parent", "status", "n", "seeds", "top1_mean", "top1_std",
           "top5_mean", "best_top1_mean", "delta", "p_value", "within_noise", "gmacs", "params_m",
           "resolution", "recipe", "paper_row", "paper_top1", "paper_top1_std", "paper_gflops", "paper_delta",
           "infer_img_s", "train_img_s", "paper_check", "note"]


def _num(value: Any) -> float:
    """A finite float, else NaN (missing, text, or an edited NaN/Infinity: never shown as a number)."""
    try:
        x = float(value) if value not in (None, "") else math.nan
    except (TypeError, ValueError, OverflowError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _failure(r: dict[str, Any]) -> str:
    epoch = r.get("failed_epoch")
    reason = (str(r.get("reason") or "").strip().splitlines() or ["no reason given"])[0]
    return f"epoch {epoch}: {reason}" if epoch is not None else reason


def _rows(run: Run) -> pd.DataFrame:
    """One row per roadmap step: seed statistics, delta vs parent, noise test, paper values
    (``paper_check`` still empty)."""
    rows: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    for step in run.roadmap:
        res = run.results.get(step.name, {})
        done = {s: r for s, r in res.items()
                if r.get("status") == "done" and _num(r.get("top1")) == _num(r.get("top1"))}
        top1 = [float(done[s]["top1"]) for s in sorted(done)]
        n = len(top1)
        problems: dict[str, list[int]] = {}  # message -> seeds, so three identical failures read as one
        for seed in run.seeds:
            r = res.get(seed)
            if r is None:
                msg = "missing"
            elif r["status"] == "failed":
                msg = f"failed ({_failure(r)})"
            elif r["status"] == "running":
                msg = f"running (epoch {r.get('epochs_done')}/{r.get('epochs')})"
            elif seed not in done:
                msg = "done without top1"
            else:
                continue
            problems.setdefault(msg, []).append(seed)
        notes = [f"seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))} {m}" for m, s in problems.items()]
        if n:
            status = "done" if n == len(run.seeds) else "partial"
        elif any(r["status"] == "failed" for r in res.values()):
            first = next(r for s, r in sorted(res.items()) if r["status"] == "failed")
            status = f"failed ({_failure(first)})"
        elif any(r["status"] == "running" for r in res.values()):
            status = "running"
        elif isinstance(run.meta.get("steps"), list) and step.name not in run.meta["steps"]:
            status = "missing (not in this run's steps)"
        else:
            status = "missing"
        any_res = next((done[s] for s in sorted(done)), None) or next((r for _, r in sorted(res.items())), {})
        mean = float(pd.Series(top1).mean()) if n else math.nan
        std = float(pd.Series(top1).std(ddof=1)) if n >= 2 else math.nan
        top5 = [_num(done[s].get("top5")) for s in sorted(done)]
        best = [_num(done[s].get("best_top1")) for s in sorted(done)]
        row: dict[str, Any] = {
            "step": step.name, "change": step.change, "adopted": step.adopted, "parent": step.parent or "",
            "status": status, "n": n, "seeds": len(run.seeds), "top1_mean": mean, "top1_std": std,
            "top5_mean": float(pd.Series(top5).mean()) if n else math.nan,
            "best_top1_mean": float(pd.Series(best).mean()) if n else math.nan,
            "gmacs": _num(any_res.get("gmacs")), "params_m": _num(any_res.get("params_m")),
            "resolution": _num(any_res.get("resolution")),
            "recipe": str(any_res.get("recipe") or ""),
            "paper_row": step.paper_row or "",
            "paper_top1": _num(step.paper.get("paper_top1")),
            "paper_top1_std": _num(step.paper.get("paper_top1_std")),
            "paper_gflops": _num(step.paper.get("paper_gflops")),
            "note": "; ".join(notes),
        }
        parent = by_name.get(step.parent or "")
        row["delta"], row["p_value"], row["within_noise"] = math.nan, math.nan, "n/a"
        row["paper_delta"] = math.nan
        if parent is not None:
            row["delta"] = mean - parent["top1_mean"]
            row["paper_delta"] = row["paper_top1"] - parent["paper_top1"]
            if n >= 2 and parent["n"] >= 2:
                p = welch_p(mean, std, n, parent["top1_mean"], parent["top1_std"], parent["n"])
                row["p_value"] = p
                row["within_noise"] = "yes" if p > NOISE_ALPHA else "no"
        row["infer_img_s"], row["train_img_s"] = _bench_of(run.bench, step.name, row["gmacs"])
        row["paper_check"] = ""
        rows.append(row)
        by_name[step.name] = row
    return pd.DataFrame(rows, columns=COLUMNS)


def _bench_of(bench: pd.DataFrame | None, step: str, gmacs: float) -> tuple[float, float]:
    """Throughput of this step's model from bench.csv, only where bench measured the model
    this run trained (same MACs): a 224-px full-size bench says nothing about a 32-px proxy."""
    if bench is None:
        return math.nan, math.nan
    hit = bench[bench["step"] == step]
    if hit.empty:
        return math.nan, math.nan
    last = hit.iloc[-1]  # a re-run of bench appends; the latest row wins
    bench_gmacs = _num(last.get("gmacs"))
    if not (math.isnan(bench_gmacs) or math.isnan(gmacs)) and abs(bench_gmacs - gmacs) > 0.01 * gmacs + 1e-6:
        return math.nan, math.nan
    return _num(last.get("infer_img_s")), _num(last.get("train_img_s"))


# --- agreement with the paper ------------------------------------------------------------------

@dataclass(frozen=True)
class Agreement:
    compared: int
    """Steps where both this run's delta and the paper's delta exist."""
    sign_matches: int
    mismatches: tuple[str, ...]
    ranked: int
    """Steps with both our top-1 and the paper's (the Spearman sample)."""
    spearman: float


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def agreement(table: pd.DataFrame) -> Agreement:
    """Sign agreement of per-step deltas and Spearman rank correlation of top-1, ours vs paper."""
    both = table.dropna(subset=["delta", "paper_delta"])
    same = [_sign(d) == _sign(p) for d, p in zip(both["delta"], both["paper_delta"])]
    ranked = table.dropna(subset=["top1_mean", "paper_top1"])
    return Agreement(compared=len(both), sign_matches=sum(same),
                     mismatches=tuple(s for s, ok in zip(both["step"], same) if not ok),
                     ranked=len(ranked), spearman=spearman(ranked["top1_mean"], ranked["paper_top1"]))


@dataclass(frozen=True)
class Findings:
    """A run's table and what follows from it, computed once per report."""

    table: pd.DataFrame
    agreement: Agreement
    fidelity: Fidelity


def analyze(run: Run) -> Findings:
    """The table of :func:`summarize` with its paper checks, and the agreement figures."""
    # paper deltas only where the step's and its parent's specs are the paper's (under the run's proxy)
    table = mark_paper_order(_rows(run), run.roadmap.paper_path, run.roadmap, run.meta.get("proxy"))
    fid = assess(table, run.roadmap.paper_path, run_eval_set(run.meta))
    for c in fid.checks:
        table.loc[table["step"] == c.step, "paper_check"] = c.label
    return Findings(table=table, agreement=agreement(table), fidelity=fid)


def summarize(run: Run) -> pd.DataFrame:
    """One row per roadmap step: seed statistics, delta vs parent, noise test, paper values."""
    return analyze(run).table
