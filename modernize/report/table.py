"""The report's numbers: one row per roadmap step (seed statistics, delta against the parent,
noise test, paper values, throughput) and what follows from the table -- the paper checks
(``modernize.checks.fidelity``) and the secondary agreement figures -- computed once per report
(:func:`analyze`) and handed to every renderer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..checks.fidelity import NOISE_ALPHA, NOISE_SENTENCE, EvalSet, Fidelity, assess, mark_paper_order, run_eval_set
from ..checks.stats import spearman, welch_p
from ..roadmap import Roadmap
from . import facts
from .load import Run
from .record import COLUMNS, SCHEMA, Agreement, ReportRecord, Row, Status, status_text, with_lesson

NOISE_RULE = NOISE_SENTENCE.rstrip(".")  # the words of fidelity.TEST_SENTENCES

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


def _job_problem(r: dict[str, Any] | None, done: bool) -> tuple[Status, str] | None:
    """Why one seed of a step has no result (None: it has one)."""
    if r is None:
        return Status.MISSING, ""
    if r["status"] == "failed":
        return Status.FAILED, _failure(r)
    if r["status"] == "running":
        return Status.RUNNING, f"epoch {r.get('epochs_done')}/{r.get('epochs')}"
    if r["status"] == Status.STALE.value:
        return Status.STALE, str(r.get("reason") or "trained otherwise than this run")
    return None if done else (Status.DONE, "without top1")


def _step_status(run: Run, step: str, res: dict[int, Any], done: dict[int, Any]) -> tuple[Status, str, str]:
    """The step's status, its reason and the note naming the seeds that did not finish."""
    problems: dict[tuple[Status, str], list[int]] = {}  # so three identical failures read as one
    for seed in run.seeds:
        problem = _job_problem(res.get(seed), seed in done)
        if problem is not None:
            problems.setdefault(problem, []).append(seed)
    words = {p: f"{p[0].value} ({p[1]})" if p[1] and p[0] is not Status.DONE else
             f"{p[0].value} {p[1]}".strip() for p in problems}
    note = "; ".join(f"seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))} {words[p]}"
                     for p, s in problems.items())
    if done:
        return (Status.DONE if len(done) == len(run.seeds) else Status.PARTIAL), "", note
    for status in (Status.STALE, Status.FAILED):
        first = next((p for p in problems if p[0] is status), None)
        if first is not None:
            return status, first[1], note
    if any(p[0] is Status.RUNNING for p in problems):
        return Status.RUNNING, "", note
    if isinstance(run.meta.get("steps"), list) and step not in run.meta["steps"]:
        return Status.MISSING, "not in this run's steps", note
    return Status.MISSING, "", note


def _rows(run: Run) -> list[dict[str, Any]]:
    """One row per roadmap step: seed statistics, delta vs parent, noise test, paper values
    (the paper check still empty); ``status`` is a :class:`Status`, ``status_reason`` beside it."""
    rows: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    for step in run.roadmap:
        res = run.results.get(step.name, {})
        done = {s: r for s, r in res.items()
                if r.get("status") == "done" and _num(r.get("top1")) == _num(r.get("top1"))}
        top1 = [float(done[s]["top1"]) for s in sorted(done)]
        n = len(top1)
        status, reason, note = _step_status(run, step.name, res, done)
        any_res = next((done[s] for s in sorted(done)), None) or next((r for _, r in sorted(res.items())), {})
        mean = float(pd.Series(top1).mean()) if n else math.nan
        std = float(pd.Series(top1).std(ddof=1)) if n >= 2 else math.nan
        top5 = [_num(done[s].get("top5")) for s in sorted(done)]
        best = [_num(done[s].get("best_top1")) for s in sorted(done)]
        row: dict[str, Any] = {
            "step": step.name, "change": step.change, "adopted": step.adopted, "parent": step.parent or "",
            "status": status, "status_reason": reason, "n": n, "seeds": len(run.seeds), "top1_mean": mean,
            "top1_std": std, "top5_mean": float(pd.Series(top5).mean()) if n else math.nan,
            "best_top1_mean": float(pd.Series(best).mean()) if n else math.nan,
            "gmacs": _num(any_res.get("gmacs")), "params_m": _num(any_res.get("params_m")),
            "resolution": _num(any_res.get("resolution")),
            "recipe": str(any_res.get("recipe") or ""),
            "paper_row": step.paper_row or "",
            "paper_top1": _num(step.paper.get("paper_top1")),
            "paper_top1_std": _num(step.paper.get("paper_top1_std")),
            "paper_gflops": _num(step.paper.get("paper_gflops")),
            "note": note,
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
    return rows


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


def findings(rows: list[dict[str, Any]], paper_csv: Path | None, roadmap: Roadmap | None = None,
             proxy: Any = None, evals: EvalSet | None = None) -> tuple[tuple[Row, ...], Agreement, Fidelity]:
    """The rows (with status enums) made :class:`Row` records, with their paper checks and the
    agreement figures: the one place a table becomes verdicts (also for migrated reports). Paper
    deltas only where the step's and its parent's specs are the paper's (``roadmap`` under
    ``proxy``); ``evals``: what the run is scored on (near chance: inconclusive)."""
    frame = pd.DataFrame([{**r, "status": status_text(r["status"], r["status_reason"])} for r in rows],
                         columns=COLUMNS)
    frame = mark_paper_order(frame, paper_csv, roadmap, proxy)
    fid = assess(frame, paper_csv, evals)
    checks = {c.step: c for c in fid.checks}
    na = {c.step: c.na_reason for c in fid.not_checked}
    out = []
    for r, (_, f) in zip(rows, frame.iterrows()):
        c = checks.get(r["step"])
        fields = {k: f[k] for k in COLUMNS if k not in ("status", "paper_check", "adopted", "n", "seeds")}
        fields |= {k: r[k] for k in ("status", "status_reason", "adopted", "n", "seeds")}
        out.append(Row(**{**fields, "paper_kind": c.kind if c else "", "paper_verdict": c.verdict if c else "",
                          "na_reason": na.get(r["step"], "")}))
    return tuple(out), agreement(frame), fid


def analyze(run: Run) -> ReportRecord:
    """The run's :class:`ReportRecord`: table, paper checks, agreement, seeds, curves, drawn specs."""
    rows, agr, fid = findings(_rows(run), run.roadmap.paper_path, run.roadmap, run.meta.get("proxy"),
                              run_eval_set(run.meta))
    rows = with_lesson(rows, run.roadmap)
    return ReportRecord(schema=SCHEMA, run=facts.provenance(run), rows=rows, agreement=agr, fidelity=fid,
                        seeds=facts.seeds(run), curves=facts.curves(run), specs=facts.specs(run))


def summarize(run: Run) -> pd.DataFrame:
    """One row per roadmap step: seed statistics, delta vs parent, noise test, paper values."""
    return analyze(run).frame()
