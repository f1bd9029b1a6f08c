"""Battery cases: the commands that read or write output folders rather than train them:
``report --page-only``, ``compare`` and ``compare --rerender``, ``explore`` (its candidates file,
budget flags, --out and --store) and text flags given an empty value (section 7)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import Ctx, case, job, readonly, report, tiny_recipe, train

# --- a record file edited: report.json and compare.json ---------------------------------------------------

def _edit_json(path: Path, edit: Callable[[Any], Any]) -> None:
    """``edit`` the parsed file and write it back (``json.dumps`` writes NaN and Infinity as given)."""
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _row(key: str, value: Any) -> Callable[[Any], Any]:
    def edit(rec: Any) -> Any:
        rec["rows"][0][key] = value
        return rec
    return edit


RECORD_FAULTS: list[tuple[str, Callable[[Any], Any]]] = [
    ("top1-nan", _row("top1_mean", float("nan"))),
    ("std-inf", _row("top1_std", float("inf"))),
    ("top1-true", _row("top1_mean", True)),
    ("n-string", _row("n", "2")),
    ("n-fraction", _row("n", 1.5)),
    ("change-list", _row("change", ["<b>x</b>"])),
    ("rows-object", lambda r: {**r, "rows": {"a": 1}}),
    ("proxy-nan", lambda r: {**r, "run": {**r["run"], "proxy": {**r["run"]["proxy"], "width": float("nan")}}}),
]


def _page_only(edit: Callable[[Any], Any]) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        ctx.trained()
        folder = ctx.run / "report"
        _edit_json(folder / "report.json", edit)
        ctx.refused(report(ctx, folder, "--page-only"), "report.json", keep=[folder])
    return fn


for _id, _edit in RECORD_FAULTS:
    case(f"page-only-report-json-{_id}")(_page_only(_edit))


def _compare(ctx: Ctx) -> Path:
    """Two copies of the trained run compared into root/cmp (its compare.json to edit)."""
    ctx.trained()
    ctx.trained(ctx.root / "run2")
    out = ctx.root / "cmp"
    ctx.ok(["compare", str(ctx.run), str(ctx.root / "run2"), "--out", str(out)])
    return out


def _cmp_runs(key: str, value: Any) -> Callable[[Any], Any]:
    def edit(rec: Any) -> Any:
        rec["runs"][0][key] = value
        return rec
    return edit


for _id, _edit in [("list", lambda r: [r]), ("lr-nan", _cmp_runs("lr", float("nan"))),
                   ("seeds-strings", _cmp_runs("seeds", ["0"])), ("label-number", _cmp_runs("label", 7))]:
    def _rerender_case(ctx: Ctx, edit: Callable[[Any], Any] = _edit) -> None:
        out = _compare(ctx)
        _edit_json(out / "compare.json", edit)
        ctx.refused(["compare", "--rerender", str(out)], "compare.json", keep=[out])
    case(f"compare-rerender-json-{_id}")(_rerender_case)


@case("compare-same-run-twice")
def _compare_self(ctx: Ctx) -> None:
    ctx.trained()
    ctx.refused(["compare", str(ctx.run), str(ctx.root / "." / "run")], "one run folder")


@case("compare-run-and-its-symlink")
def _compare_link(ctx: Ctx) -> None:
    ctx.trained()
    (ctx.root / "link").symlink_to(ctx.run)
    ctx.refused(["compare", str(ctx.root / "link"), str(ctx.run)], "one run folder")


# --- output folders of another command -------------------------------------------------------------------

def _foreign(ctx: Ctx, kind: str) -> Path:
    """A folder another command wrote: an explore's (explore.csv, index.html) or a run folder."""
    if kind == "run":
        ctx.trained()
        return ctx.run
    folder = ctx.root / "exp"
    ctx.w("exp/explore.csv", "round,knob\n")
    ctx.w("exp/index.html", "<html>the explore's page</html>\n")
    return folder


@case("report-out-explore-folder")
def _report_into_explore(ctx: Ctx) -> None:
    folder = _foreign(ctx, "explore")
    ctx.trained()
    ctx.refused(report(ctx, None, "--out", str(folder)), "explore.csv", keep=[folder])


@case("train-out-explore-folder")
def _train_into_explore(ctx: Ctx) -> None:
    folder = _foreign(ctx, "explore")
    ctx.refused(train(ctx, out=folder), "explore.csv", keep=[folder])
    ctx.ok(train(ctx))


@case("train-out-report-folder")
def _train_into_report(ctx: Ctx) -> None:
    ctx.trained()
    ctx.ok(report(ctx, None))
    folder = ctx.run / "report"
    ctx.refused(train(ctx, out=folder), "report.json", keep=[folder])


@case("report-out-is-the-run-folder")
def _report_into_run(ctx: Ctx) -> None:
    ctx.trained()
    ctx.refused(report(ctx, None, "--out", str(ctx.run)), "run.json")


@case("compare-out-report-folder")
def _compare_into_report(ctx: Ctx) -> None:
    ctx.trained()
    ctx.trained(ctx.root / "run2")
    folder = ctx.run / "report"
    ctx.refused(["compare", str(ctx.run), str(ctx.root / "run2"), "--out", str(folder)], "report.json")


# --- explore ----------------------------------------------------------------------------------------------

CANDS = '[[candidates]]\nname = "gelu"\napply = "gelu"\n'


def explore(ctx: Ctx, *extra: str, cands: str = CANDS, out: Path | None = None,
            store: Path | None = None) -> list[str]:
    """A one-round explore of the tiny recipe on synthetic data at the battery's proxy."""
    return ["explore", "--data", "synthetic:32", "--recipe", str(tiny_recipe(ctx)), "--candidates",
            str(ctx.w("cands.toml", cands)), "--width", "0.125", "--depth", "0.34", "--low-res", "2",
            "--device", "cpu", "--threads", "1", "--seeds", "0", "--max-rounds", "1",
            "--out", str(out or ctx.root / "exp"), "--store", str(store or ctx.root / "store"), *extra]


def _explore_refused(make: Callable[[Ctx], list[str]], culprit: str) -> Callable[[Ctx], None]:
    """Refused before anything is trained (the case's root unchanged), then the good one runs."""
    def fn(ctx: Ctx) -> None:
        ctx.refused(make(ctx), culprit, keep=[ctx.root])
        ctx.ok(explore(ctx, out=ctx.root / "good", store=ctx.root / "good-store"))
    return fn


for _id, _make, _cul in [
    ("out-is-file", lambda c: explore(c, out=c.w("f", "x")), "/f"),
    ("store-is-file", lambda c: explore(c, store=c.w("f", "x")), "/f"),
    ("out-readonly", lambda c: explore(c, out=readonly(c.root / "ro") / "sub"), "/ro"),
    ("store-readonly", lambda c: explore(c, store=readonly(c.root / "ro") / "sub"), "/ro"),
    ("out-equals-store", lambda c: explore(c, out=c.root / "same", store=c.root / "same"), "one folder"),
    ("out-explore-of-report", lambda c: explore(c, out=c.w("rep/report.json", "{}").parent), "report.json"),
    ("store-is-run-folder", lambda c: explore(c, store=c.w("r/run.json", "{}").parent), "run.json"),
    ("candidate-param-unknown",
     lambda c: explore(c, cands='[[candidates]]\nname = "k"\napply = { transform = "kernel_size", kernel = 7 }\n'),
     "kernel"),
    ("candidate-param-type",
     lambda c: explore(c, cands='[[candidates]]\nname = "k"\napply = { transform = "kernel_size", '
                                'kernel_size = "7" }\n'), "kernel_size"),
    ("candidate-param-missing",
     lambda c: explore(c, cands='[[candidates]]\nname = "a"\napply = "act"\n'), "kind"),
    ("candidate-knob-twice",
     lambda c: explore(c, cands=CANDS + '[[candidates]]\nname = "gelu"\nalternatives = [{ name = "k5", apply = '
                                       '{ transform = "kernel_size", kernel_size = 5 } }]\n'), "appears twice"),
    ("max-gmacs-without-flops-rule", lambda c: explore(c, "--max-gmacs", "5"), "--max-gmacs"),
    ("plan-out-is-file", lambda c: explore(c, "--plan", out=c.w("f", "x")), "/f"),
]:
    case(f"explore-{_id}")(_explore_refused(_make, _cul))


@case("explore-out-report-folder-kept")
def _explore_into_report(ctx: Ctx) -> None:
    """A report folder given as --out: its index.html is the report's page and stays."""
    ctx.trained()
    folder = ctx.run / "report"
    ctx.refused(explore(ctx, out=folder), "report.json", keep=[ctx.run])


@case("explore-nothing-applies-says-why")
def _explore_says_why(ctx: Ctx) -> None:
    """No candidate applies to the start: the explore trains nothing and its stop line says why."""
    res = ctx.ok(explore(ctx, cands='[[candidates]]\nname = "mv"\napply = "move_up_dwconv"\n'))
    stop = next((ln for ln in res.out.splitlines() if ln.startswith("stopped:")), "")
    if "mv" not in stop or "not applicable" not in stop:
        ctx.fail("wrong", f"the stop line does not say which candidate failed and why: {stop!r}")


@case("explore-sigint-mid-round-then-rerun")
def _explore_sigint(ctx: Ctx) -> None:
    """Ctrl-C after the round's first job: exit 130; the rerun reuses that job and finishes."""
    ctx.stopped(explore(ctx), hooks=[("after", "*:run_job", "SIGINT", 1)])
    res = ctx.ok(explore(ctx))
    if "1 reused" not in res.out or "1 trained now" not in res.out:
        ctx.fail("wrong", f"the rerun should reuse the stopped round's finished job: {res.out[-300:]!r}")
    rows = (ctx.root / "exp" / "explore.csv").read_text().splitlines()
    if len(rows) != 3:
        ctx.fail("wrong", f"explore.csv should hold the start and the candidate: {rows!r}")


# --- text flags given an empty value ---------------------------------------------------------------------

for _id, _argv, _cul in [
    ("report-reference", lambda c: report(c, None, "--reference", ""), "--reference"),
    ("report-out", lambda c: report(c, None, "--out", ""), "--out"),
    ("compare-out", lambda c: ["compare", str(c.run), str(c.root / "run2"), "--out", ""], "--out"),
    ("describe-figure", lambda c: ["describe", "--no-counts", "--figure", ""], "--figure"),
    ("explore-start", lambda c: explore(c, "--start", ""), "--start"),
    ("explore-store", lambda c: explore(c, "--store", " "), "--store"),
    ("report-run-dir", lambda c: ["report", ""], "RUN_DIR"),
]:
    def _empty_case(ctx: Ctx, argv: Callable[[Ctx], list[str]] = _argv, culprit: str = _cul) -> None:
        ctx.trained()
        ctx.refused(argv(ctx), culprit, keep=[ctx.root])
    case(f"flag-empty-{_id}")(_empty_case)


# --- a job's result out of its range: an accuracy outside 0..100, a negative cost ---------------------------

def _result_range(key: str, value: float) -> Callable[[Ctx], None]:
    """report refuses the edited result.json naming it and the key; train then restores the
    job's numbers from its checkpoint (the uninterrupted run's top-1)."""
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        _edit_json(job(ctx, "result.json"), lambda r: {**r, key: value})
        res = ctx.refused(report(ctx, None, "--out", str(ctx.root / "rep")), f"'{key}'")
        if "result.json" not in res.last:
            ctx.fail("fail", f"the error line does not name result.json: {res.last[:200]!r}")
        ctx.ok(train(ctx))
        ctx.done(top1)
    return fn


for _key, _value in [("top1", 250.0), ("top1", -5.0), ("top5", 100.5), ("best_top1", -0.01), ("gmacs", -1.0),
                     ("params_m", -3.0)]:
    case(f"result-json-{_key}-out-of-range-{_value:g}")(_result_range(_key, _value))


@case("explore-store-result-top1-250")
def _explore_store_edited(ctx: Ctx) -> None:
    """A store's result.json edited to top-1 250: the rerun does not adopt on it (it trains
    the job again from its checkpoint, as train does) and reports the real numbers."""
    ctx.ok(explore(ctx))
    table = (ctx.root / "exp" / "explore.csv").read_text()
    edited = [p for p in (ctx.root / "store").rglob("result.json")][0]
    _edit_json(edited, lambda r: {**r, "top1": 250.0})
    res = ctx.ok(explore(ctx))
    if "1 trained now" not in res.out:
        ctx.fail("wrong", f"the edited job should be trained again: {res.out[-300:]!r}")
    if (ctx.root / "exp" / "explore.csv").read_text() != table or "250" in table:
        ctx.fail("wrong", "explore.csv changed after the edited job was restored")


@case("explore-store-job-folder-copied-in")
def _explore_store_copied(ctx: Ctx) -> None:
    """One spec's job folder copied over another's in the store: refused naming the folder (it
    was reused as the other spec's result); with that folder removed the explore trains it again."""
    ctx.ok(explore(ctx))
    table = (ctx.root / "exp" / "explore.csv").read_text()
    a, b = sorted(p.parent for p in (ctx.root / "store").rglob("seed0/result.json"))[:2]
    shutil.rmtree(b)
    shutil.copytree(a, b)
    ctx.refused(explore(ctx), b.parent.name, keep=[ctx.root / "store", ctx.root / "exp"])
    shutil.rmtree(b)
    ctx.ok(explore(ctx))
    if (ctx.root / "exp" / "explore.csv").read_text() != table:
        ctx.fail("wrong", "explore.csv differs after the copied-in job was trained again")


# --- flags the chosen mode would ignore -------------------------------------------------------------------

@case("page-only-with-out")
def _page_only_out(ctx: Ctx) -> None:
    """--out with --page-only: the report folder would be rewritten in place, --out dropped."""
    ctx.trained()
    ctx.refused(report(ctx, ctx.run / "report", "--page-only", "--out", str(ctx.root / "else")), "--out",
                keep=[ctx.root])


@case("page-only-with-reference")
def _page_only_reference(ctx: Ctx) -> None:
    """--reference with --page-only: no reproduction check would be made, without a word."""
    ctx.trained()
    ctx.trained(ctx.root / "ref")
    ctx.refused(report(ctx, ctx.run / "report", "--page-only", "--reference", str(ctx.root / "ref" / "report")),
                "--reference", keep=[ctx.root])


@case("compare-rerender-with-run-dirs")
def _rerender_runs(ctx: Ctx) -> None:
    out = _compare(ctx)
    ctx.refused(["compare", str(ctx.run), str(ctx.root / "run2"), "--rerender", str(out)], "--rerender",
                keep=[ctx.root])


@case("compare-rerender-with-out")
def _rerender_out(ctx: Ctx) -> None:
    out = _compare(ctx)
    ctx.refused(["compare", "--rerender", str(out), "--out", str(ctx.root / "else")], "--out", keep=[ctx.root])
