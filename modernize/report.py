"""Reports of a training run (``run_ablation.py report RUN_DIR``): the ablation table and
the paper's Figure 2 redrawn from the run, next to the paper's numbers.

Input is the RUN_DIR the training engine writes, read through ``modernize.runfolder`` (where
its files are defined: ``run.json``, ``<step>/seed<k>/result.json`` and ``log.csv``), plus an
optional ``bench.csv`` (step, infer_img_s, train_img_s, ...).

Output (default ``RUN_DIR/report/``, so a report always sits beside the run it describes;
the main job passes ``reports/<roadmap>/`` to publish it): ``table.md``, ``table.csv``,
``table.tex``, ``agreement.md``, ``roadmap.png``, ``roadmap.svg``, ``acc_vs_gmacs.png``,
``curves.png``. Every step of the roadmap gets a row, in roadmap order; failed, running
and missing steps say so instead of disappearing.

Noise rule: a step's delta (its mean top-1 minus its parent's) is *within seed noise* when
Welch's two-sided t-test on the two steps' seed results gives p > 0.05. It needs at least
two finished seeds on both sides; otherwise the mark is ``n/a``.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigError
from .fidelity import Fidelity, assess, fidelity_markdown
from .files import atomic_write_bytes, atomic_write_text, check_writable_dir
from .paths import default_out
from .reference import SEEDS_FILE, seeds_frame
from .roadmap import Roadmap, load_roadmap
from .runfolder import (
    NOT_IN_FINGERPRINT,
    RUN_META,
    JobResult,
    RunMeta,
    differing,
    job_folder,
    load_result,
    read_job_config,
    read_log,
    read_run_meta,
    short,
)
from .stats import spearman, welch_p

NOISE_ALPHA = 0.05
NOISE_RULE = (f"within noise = Welch's two-sided t-test of the step's seeds against its parent's seeds "
              f"gives p > {NOISE_ALPHA} (needs >= 2 finished seeds on both sides, else n/a)")
DPI = 120
"""Figures are saved at a fixed DPI and size (no tight bbox), so their pixel size is known."""

COLUMNS = ["step", "change", "adopted", "parent", "status", "n", "seeds", "top1_mean", "top1_std",
           "top5_mean", "best_top1_mean", "delta", "p_value", "within_noise", "gmacs", "params_m",
           "resolution", "recipe", "paper_row", "paper_top1", "paper_top1_std", "paper_gflops", "paper_delta",
           "infer_img_s", "train_img_s", "paper_check", "note"]


# --- reading a run ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """A RUN_DIR as read from disk: its metadata, roadmap, per-seed results and logs."""

    run_dir: Path
    meta: RunMeta
    roadmap: Roadmap
    seeds: tuple[int, ...]
    results: dict[str, dict[int, JobResult]]
    """step -> seed -> result.json (seeds without a result.json are absent)."""
    logs: dict[str, dict[int, pd.DataFrame]] = field(default_factory=dict)
    bench: pd.DataFrame | None = None


def _roadmap_of(run_dir: Path, meta: RunMeta) -> Roadmap:
    """The run's roadmap file, else the built-in of that name (a run folder moved to another machine)."""
    path, name = meta["roadmap"]["path"], meta["roadmap"]["name"]
    for candidate in (Path(path), run_dir / path):
        if path and candidate.is_file():
            return load_roadmap(candidate)
    try:
        return load_roadmap(name)
    except ConfigError:
        pass
    raise ConfigError(f"{run_dir / RUN_META}: the roadmap file ({path!r}) is missing and its name "
                      f"({name!r}) is not a built-in roadmap")


def _check_jobs(run_dir: Path, meta: RunMeta, roadmap: Roadmap, seeds: list[int]) -> None:
    """Every job that records its fingerprint must be the job this report describes: the
    roadmap's step as the file defines it now, the recipe, proxy and data of run.json. A roadmap
    edited after training, or a job left from another configuration, would otherwise be shown
    under the wrong labels. (Jobs trained before fingerprints are taken as they are.)"""
    recipes = {k: v["values"] for k, v in (meta.get("step_recipes") or {}).items()}
    for step in roadmap:
        values = recipes.get(step.recipe or "", meta["recipe"]["values"])
        expected = json.loads(json.dumps({
            "step_spec": step.spec.to_dict(), "proxy": meta["proxy"], "data": meta["data"],
            "recipe": {k: v for k, v in values.items() if k not in NOT_IN_FINGERPRINT}}, sort_keys=True, default=str))
        for seed in seeds:
            folder = job_folder(run_dir, step.name, seed)
            try:
                parts = read_job_config(folder).get("fingerprint_parts")
            except (FileNotFoundError, ConfigError):
                continue  # no job, or one the table already shows as unreadable/missing
            if not isinstance(parts, dict):
                continue
            if isinstance(parts.get("proxy"), dict):  # run.json's proxy adds notes of its own
                expected["proxy"] = {k: meta["proxy"].get(k) for k in parts["proxy"]}
            diff = differing({k: parts.get(k) for k in expected}, expected)
            if not diff:
                continue
            source = (f"roadmap file {meta['roadmap']['path'] or roadmap.name} now defines step '{step.name}'"
                      if any(d.startswith("step_spec.") or d.startswith("step_spec ") for d in diff)
                      else f"{run_dir / RUN_META} records")
            raise ConfigError(f"{folder}: trained otherwise than {source} (trained -> now: "
                              f"{short(', '.join(diff), 200)}); restore what changed, or retrain it with "
                              "`train ... --force` (the old job is kept under RUN_DIR/.replaced/)")


def _find_bench(run_dir: Path, out: Path, roadmap_name: str) -> pd.DataFrame | None:
    for path in (run_dir / "bench.csv", out / "bench.csv", default_out(roadmap_name) / "bench.csv"):
        if path.is_file():
            try:
                bench = pd.read_csv(path)
            except (OSError, ValueError) as exc:  # ParserError, EmptyDataError, UnicodeDecodeError
                raise ConfigError(f"{path}: cannot read bench table: {type(exc).__name__}: {exc}"[:400]) from None
            if "step" not in bench.columns:
                raise ConfigError(f"{path}: bench table needs a 'step' column (has {', '.join(bench.columns)})")
            return bench
    return None


def load_run(run_dir: Path, out: Path | None = None) -> Run:
    """Read and validate a RUN_DIR (nothing is written)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"RUN_DIR '{run_dir}': no such folder")
    meta = read_run_meta(run_dir)
    seeds = meta["seeds"]
    roadmap = _roadmap_of(run_dir, meta)
    _check_jobs(run_dir, meta, roadmap, seeds)
    results: dict[str, dict[int, JobResult]] = {}
    logs: dict[str, dict[int, pd.DataFrame]] = {}
    for step in roadmap:
        results[step.name], logs[step.name] = {}, {}
        for seed in seeds:
            folder = job_folder(run_dir, step.name, seed)
            result = load_result(folder)
            if result is not None:
                results[step.name][seed] = result
            log = read_log(folder)
            if log is not None:
                logs[step.name][seed] = log
    out = Path(out) if out is not None else run_dir / "report"
    return Run(run_dir=run_dir, meta=meta, roadmap=roadmap, seeds=tuple(seeds), results=results, logs=logs,
               bench=_find_bench(run_dir, out, roadmap.name))


# --- the table -------------------------------------------------------------------------------

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


def summarize(run: Run) -> pd.DataFrame:
    """One row per roadmap step: seed statistics, delta vs parent, noise test, paper values."""
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
    table = pd.DataFrame(rows, columns=COLUMNS)
    for c in assess(table, run.roadmap.paper_path).checks:
        table.loc[table["step"] == c.step, "paper_check"] = f"{c.kind}: {c.verdict}"
    return table


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


def agreement_markdown(table: pd.DataFrame, agr: Agreement, paper_csv: Path | None = None) -> str:
    rho = "n/a (needs >= 3 steps with both values)" if math.isnan(agr.spearman) else f"{agr.spearman:+.3f}"
    lines = [fidelity_markdown(assess(table, paper_csv)), "## Secondary figures", "",
             f"- Sign of the delta vs the parent step matches the paper's, over every step (noise included): "
             f"{agr.sign_matches} of {agr.compared} steps.",
             f"- Spearman rank correlation of top-1, this run vs the paper, over {agr.ranked} steps: {rho}."]
    if agr.mismatches:
        noise = dict(zip(table["step"], table["within_noise"]))
        lines.append("- Opposite sign: " + ", ".join(f"{s} (within noise: {noise[s]})" for s in agr.mismatches) + ".")
    lines += ["", "The paper's numbers are ImageNet-1K top-1 at 224 px after 300 epochs; this run's data, "
              "resolution and budget differ, so only directions and orderings are comparable.", ""]
    return "\n".join(lines)


# --- text tables -------------------------------------------------------------------------------

def _f(x: float, fmt: str) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _g(x: float) -> str:
    """GMACs with three significant digits at any scale (0.0123 at 28 px, 4.09 at 224 px)."""
    if math.isnan(x):
        return ""
    return f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def _top1_cell(r: pd.Series, pm: str) -> str:
    if r["n"] == 0:
        return str(r["status"])
    cell = f"{r['top1_mean']:.2f}"
    if r["n"] >= 2:
        cell += f" {pm} {r['top1_std']:.2f}"
    return cell + f" (n={r['n']}{'' if r['n'] == r['seeds'] else '/' + str(r['seeds'])})"


def display_table(table: pd.DataFrame, *, pm: str = "±") -> pd.DataFrame:
    """The human table (strings): the same numbers as ``table.csv``, rounded for reading."""
    res = table["resolution"].dropna().unique()
    gcol = f"GMACs @{int(res[0])}px" if len(res) == 1 else "GMACs"
    shown = pd.DataFrame({
        "step": table["step"],
        "change": table["change"],
        "adopted": table["adopted"].map({True: "yes", False: "branch"}),
        "from": table["parent"],
        gcol: table["gmacs"].map(_g),
        "params (M)": table["params_m"].map(lambda x: _f(x, ".3f")),
        "top-1 (%)": [_top1_cell(r, pm) for _, r in table.iterrows()],
        "delta": table["delta"].map(lambda x: _f(x, "+.2f")),
        "within noise": [w if w == "n/a" else f"{w} (p={p:.2f})"
                         for w, p in zip(table["within_noise"], table["p_value"])],
        "paper top-1": table["paper_top1"].map(lambda x: _f(x, ".2f")),
        "paper delta": table["paper_delta"].map(lambda x: _f(x, "+.2f")),
        "paper GFLOPs": table["paper_gflops"].map(lambda x: _f(x, ".2f")),
        "paper check": table["paper_check"].fillna(""),
    })
    if table["infer_img_s"].notna().any() or table["train_img_s"].notna().any():
        shown["infer img/s"] = table["infer_img_s"].map(lambda x: _f(x, ".3g"))
        shown["train img/s"] = table["train_img_s"].map(lambda x: _f(x, ".3g"))
    return shown


def _run_line(run: Run) -> str:
    m = run.meta
    return (f"Roadmap `{run.roadmap.name}`, recipe `{m['recipe']['name']}`, data `{m.get('data', '?')}`, "
            f"seeds {', '.join(map(str, run.seeds))}{_proxy(m.get('proxy'))}. "
            f"Run folder: `{_shown_path(run.run_dir)}`.")


def _shown_path(path: Path) -> str:
    """Relative to the working folder when inside it, so committed reports name no machine."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):  # outside the working folder, or the working folder was deleted
        return str(path)


def _proxy(proxy: Any) -> str:
    """The engine's proxy scale, when the run used one (every step shrunk the same way)."""
    if not isinstance(proxy, dict) or not proxy:
        return ""
    parts = [f"{k} {proxy[k]}" for k in ("width", "depth", "stem_stride") if proxy.get(k) not in (None, 1, 1.0)]
    if proxy.get("init") not in (None, "paper"):
        parts.append(f"init {proxy['init']}")
    if proxy.get("layer_scale") is not None:  # the `change` column names the paper's init, not this one
        parts.append(f"layer scale init {proxy['layer_scale']} (in place of each step's own)")
    return ("; proxy scale " + ", ".join(parts)) if parts else ""


def to_markdown(run: Run, table: pd.DataFrame, agr: Agreement) -> str:
    lines = [f"# Ablation: {run.roadmap.name}", "", _run_line(run), "",
             display_table(table).to_markdown(index=False, disable_numparse=True), "",
             "- top-1: mean ± sample std (ddof=1) over the finished seeds, n = finished/total seeds.",
             "- delta: mean top-1 minus the mean of the step's parent (`from`: the previous adopted step).",
             f"- {NOISE_RULE}.",
             "- paper columns: ImageNet-1K top-1 and GFLOPs (= multiply-accumulates, 224 px) of the paper's row.",
             "- GMACs and params: the model actually trained, at the training resolution.", ""]
    notes = [(s, n) for s, n in zip(table["step"], table["note"]) if n]
    if notes:
        lines += ["Seeds that did not finish:", ""] + [f"- {s}: {n}" for s, n in notes] + [""]
    return "\n".join(lines) + "\n" + agreement_markdown(table, agr, run.roadmap.paper_path)


_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
               "→": r"$\rightarrow$", "×": r"$\times$"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPE.get(ch, ch) for ch in str(text))


def to_latex(run: Run, table: pd.DataFrame) -> str:
    """A booktabs table body to ``\\input`` into a paper (needs ``\\usepackage{booktabs}``)."""
    shown = display_table(table, pm="±").drop(columns=["change", "from"])
    cols = list(shown.columns)
    lines = [f"% {run.roadmap.name}: generated by `run_ablation.py report`; {NOISE_RULE}",
             r"\begin{tabular}{l" + "l" + "r" * (len(cols) - 2) + "}", r"\toprule",
             " & ".join(_tex(c) for c in cols) + r" \\", r"\midrule"]
    for _, r in shown.iterrows():
        lines.append(" & ".join(_tex(v) for v in r) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


# --- figures -------------------------------------------------------------------------------------

ADOPTED, BRANCH, PAPER, FAILED = "#3b6fb6", "#a9c4e8", "#d9822b", "#c0392b"


def roadmap_figsize(n_steps: int) -> tuple[float, float]:
    """Inches; times ``DPI`` gives whole pixels (10 in x (0.4 in per step + 1.8 in))."""
    return 10.0, 0.4 * n_steps + 1.8


def curves_figsize(n_steps: int, ncols: int = 4) -> tuple[float, float]:
    nrows = max(1, math.ceil(n_steps / ncols))
    return 2.75 * ncols, 2.25 * nrows + 0.75


ACC_VS_GMACS_SIZE = (8.0, 6.0)


def _save(fig: Any, path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, metadata={"Software": None} if fmt == "png" else {"Date": None})
    atomic_write_bytes(path, buf.getvalue())


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    matplotlib.rcParams["svg.hashsalt"] = "modernize"  # stable SVG ids: reruns give the same file
    import matplotlib.pyplot as plt

    return plt


def roadmap_figure(run: Run, table: pd.DataFrame) -> Any:
    """Figure 2 of the paper from this run: a bar per step (top-1, seed std as error bar),
    GMACs beside each bar, explored branches hatched. The paper's top-1 (diamonds, with its
    GFLOPs) sits in a panel of its own on the same rows: its numbers are ImageNet at 224 px,
    ours are not, so the two never share an accuracy axis."""
    plt = _pyplot()
    n = len(table)
    has_paper = bool(table["paper_top1"].notna().any())
    fig, axes = plt.subplots(1, 2 if has_paper else 1, figsize=roadmap_figsize(n), dpi=DPI, sharey=True,
                             layout="constrained", squeeze=False,
                             gridspec_kw={"width_ratios": [3.0, 1.25] if has_paper else [1.0]})
    ax = axes[0, 0]
    ok = table["top1_mean"].notna()
    lo_vals = (table["top1_mean"] - table["top1_std"].fillna(0))[ok]
    hi_vals = (table["top1_mean"] + table["top1_std"].fillna(0))[ok]
    if ok.any():
        span = max(float(hi_vals.max() - lo_vals.min()), 0.5)
        lo, hi = float(lo_vals.min()) - 0.3 * span, float(hi_vals.max()) + 0.75 * span
    else:
        lo, hi = 0.0, 100.0
    for i, r in table.iterrows():
        adopted = bool(r["adopted"])
        if not ok[i]:
            ax.text(lo + 0.01 * (hi - lo), i, str(r["status"])[:70], va="center", ha="left", fontsize=8,
                    color=FAILED if str(r["status"]).startswith("failed") else "0.4", style="italic")
            continue
        ax.barh(i, r["top1_mean"] - lo, left=lo, height=0.62, color=ADOPTED if adopted else BRANCH,
                hatch=None if adopted else "///", edgecolor="white" if adopted else ADOPTED, linewidth=0.6)
        if r["n"] >= 2:
            ax.errorbar(r["top1_mean"], i, xerr=r["top1_std"], fmt="none", ecolor="black", elinewidth=1, capsize=3)
        label = f"{r['top1_mean']:.2f}"
        if not math.isnan(r["gmacs"]):
            label += f"  {_g(r['gmacs'])} G"
        if not math.isnan(r["infer_img_s"]):
            label += f"  {r['infer_img_s']:.3g} img/s"
        x_text = r["top1_mean"] + (0 if math.isnan(r["top1_std"]) else r["top1_std"]) + 0.012 * (hi - lo)
        ax.text(x_text, i, label, va="center", ha="left", fontsize=8)
    ax.set_xlim(lo, hi)
    ax.set_yticks(range(n), [s if a else f"{s} (branch)" for s, a in zip(table["step"], table["adopted"])],
                  fontsize=9)
    ax.set_ylim(n - 0.4, -0.6)
    res = table["resolution"].dropna().unique()
    at = f" at {int(res[0])} px" if len(res) == 1 else ""
    extra = "; img/s = inference throughput" if table["infer_img_s"].notna().any() else ""
    ax.set_xlabel(f"top-1 (%) on {run.meta.get('data', '?')}, mean ± seed std\nG = GMACs{at}{extra}", fontsize=9)
    ax.set_title(f"this run: recipe {run.meta['recipe']['name']}, {len(run.seeds)} seed(s)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    handles = [plt.Rectangle((0, 0), 1, 1, color=ADOPTED, label="adopted step"),
               plt.Rectangle((0, 0), 1, 1, facecolor=BRANCH, hatch="///", edgecolor=ADOPTED, label="explored branch")]
    if has_paper:
        ax2 = axes[0, 1]
        paper = table[table["paper_top1"].notna()]
        pspan = max(float(paper["paper_top1"].max() - paper["paper_top1"].min()), 0.5)
        p_lo, p_hi = float(paper["paper_top1"].min()) - 0.15 * pspan, float(paper["paper_top1"].max()) + 0.6 * pspan
        for i, r in paper.iterrows():
            ax2.plot([p_lo, r["paper_top1"]], [i, i], color=PAPER, lw=0.8, alpha=0.35)
            ax2.plot(r["paper_top1"], i, "D", color=PAPER, ms=5, mfc=PAPER if r["adopted"] else "white")
            text = f"{r['paper_top1']:.2f}" + ("" if math.isnan(r["paper_gflops"]) else f"  {r['paper_gflops']:.2f} G")
            ax2.text(r["paper_top1"] + 0.04 * pspan, i, text, va="center", ha="left", fontsize=7.5, color="0.25")
        ax2.set_xlim(p_lo, p_hi)
        ax2.set_xlabel("ImageNet-1K top-1 (%)\nG = GFLOPs at 224 px", fontsize=9)
        ax2.set_title("paper (Liu et al. 2022)", fontsize=10, color=PAPER)
        ax2.grid(axis="x", alpha=0.3)
        ax2.tick_params(axis="y", length=0)
        handles.append(plt.Line2D([], [], marker="D", color=PAPER, linestyle="none",
                                  label="paper top-1 (hollow: branch)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"{run.roadmap.name}: one bar per step", fontsize=11)
    return fig


def acc_vs_gmacs_figure(run: Run, table: pd.DataFrame) -> Any:
    """Accuracy against compute; the adopted chain is joined parent -> step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=ACC_VS_GMACS_SIZE, dpi=DPI, layout="constrained")
    t = table[table["top1_mean"].notna() & table["gmacs"].notna()]
    pos = {r["step"]: (r["gmacs"], r["top1_mean"]) for _, r in t.iterrows()}
    for _, r in t.iterrows():
        if r["parent"] in pos:
            (x0, y0), (x1, y1) = pos[r["parent"]], pos[r["step"]]
            arrow = dict(arrowstyle="->", color=ADOPTED if r["adopted"] else BRANCH, lw=1.0,
                         linestyle="-" if r["adopted"] else "--")
            ax.annotate("", (x1, y1), (x0, y0), arrowprops=arrow)
    for adopted, face in ((True, ADOPTED), (False, "white")):
        s = t[t["adopted"] == adopted]
        ax.errorbar(s["gmacs"], s["top1_mean"], yerr=s["top1_std"].fillna(0), fmt="o", mfc=face, mec=ADOPTED,
                    ecolor="0.5", capsize=2, ms=6, label="adopted" if adopted else "explored branch")
    for _, r in t.iterrows():
        ax.annotate(r["step"], (r["gmacs"], r["top1_mean"]), xytext=(5, 4), textcoords="offset points", fontsize=7)
    res = table["resolution"].dropna().unique()
    ax.set_xlabel(f"GMACs per image{f' at {int(res[0])} px' if len(res) == 1 else ''} (conv + linear)")
    ax.set_ylabel(f"top-1 (%) on {run.meta.get('data', '?')}")
    ax.set_title(f"{run.roadmap.name}: accuracy vs compute")
    ax.grid(alpha=0.3)
    missing = [s for s in table["step"] if s not in pos]
    if missing:
        ax.text(0.01, 0.01, "not shown (no result): " + ", ".join(missing), transform=ax.transAxes, fontsize=7,
                color="0.4", va="bottom", wrap=True)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def curves_figure(run: Run, table: pd.DataFrame, ncols: int = 4) -> Any:
    """Validation top-1 per epoch, one panel per step, one line per seed (failed: red)."""
    plt = _pyplot()
    n = len(table)
    nrows = max(1, math.ceil(n / ncols))
    w, h = curves_figsize(n, ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), dpi=DPI, sharex=True, sharey=True, squeeze=False)
    # Fixed margins (in inches) instead of constrained layout: many panels, same look, 3x faster.
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.1 / w, bottom=0.55 / h, top=1 - 0.65 / h, wspace=0.12, hspace=0.32)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_visible(False)
            continue
        step = table["step"].iloc[k]
        logs = run.logs.get(step, {})
        for seed, log in sorted(logs.items()):
            status = run.results.get(step, {}).get(seed, {}).get("status", "running")
            color = FAILED if status == "failed" else (ADOPTED if table["adopted"].iloc[k] else "#6d8fc4")
            ax.plot(log["epoch"], log["top1"], color=color, lw=1.1, alpha=0.85,
                    linestyle="--" if status != "done" else "-")
            if status == "failed" and len(log):
                ax.plot(log["epoch"].iloc[-1], log["top1"].iloc[-1], "x", color=FAILED)
        if not logs:
            ax.text(0.5, 0.5, str(table["status"].iloc[k])[:28], transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color="0.4", style="italic")
        ax.set_title(step + ("" if table["adopted"].iloc[k] else " (branch)"), fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if k + ncols >= n:  # the panel below is empty: this one carries the epoch ticks
            ax.xaxis.set_tick_params(labelbottom=True)
    fig.supxlabel("epoch", fontsize=9, y=0.12 / h)
    fig.supylabel(f"val top-1 (%), {run.meta.get('data', '?')}", fontsize=9, x=0.12 / w)
    fig.suptitle(f"{run.roadmap.name}: training curves (one line per seed; dashed = not finished)", fontsize=10,
                 y=1 - 0.15 / h)
    return fig


# --- entry point ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: the folder, the files, and the table they show."""

    out: Path
    paths: list[Path]
    table: pd.DataFrame
    agreement: Agreement
    fidelity: Fidelity


def write_report(run_dir: Path, out: Path | None = None) -> Report:
    """Read RUN_DIR and write the tables, agreement summary and figures into ``out``
    (default ``RUN_DIR/report/``). Every file is written atomically; all inputs are read and
    validated before the first write."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report"
    run = load_run(run_dir, out)
    check_writable_dir(out)  # a bad --out fails now, before the figures
    table = summarize(run)
    agr = agreement(table)
    shown = table.copy()  # what the caller gets back, untouched by the writers below
    plt = _pyplot()
    figures = {"roadmap": roadmap_figure(run, table), "acc_vs_gmacs": acc_vs_gmacs_figure(run, table),
               "curves": curves_figure(run, table)}
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def text(name: str, body: str) -> None:
        atomic_write_text(out / name, body)
        paths.append(out / name)

    text("table.csv", table.to_csv(index=False, float_format="%.6g"))
    text("table.md", to_markdown(run, table, agr))
    text("table.tex", to_latex(run, table))
    text(SEEDS_FILE, seeds_frame(run.results).to_csv(index=False, float_format="%.6g"))
    text("agreement.md", f"# {run.roadmap.name}\n\n" + agreement_markdown(table, agr, run.roadmap.paper_path))
    try:
        for name, fmts in (("roadmap", ("png", "svg")), ("acc_vs_gmacs", ("png",)), ("curves", ("png",))):
            for fmt in fmts:
                _save(figures[name], out / f"{name}.{fmt}", fmt)
                paths.append(out / f"{name}.{fmt}")
    finally:
        for fig in figures.values():
            plt.close(fig)
    return Report(out=out, paths=paths, table=shown, agreement=agr, fidelity=assess(table, run.roadmap.paper_path))


def build_report(run_dir: Path, out: Path | None = None) -> list[Path]:
    """:func:`write_report`, returning only the written paths."""
    return write_report(run_dir, out).paths


__all__ = ["Agreement", "NOISE_RULE", "Report", "Run", "agreement", "build_report", "load_run", "summarize",
           "write_report"]
