"""Runs side by side (``run_ablation.py compare RUN_A RUN_B [...]``): one roadmap (or roadmaps
sharing step names) trained under different recipes, proxies, data or code versions.

The first run is the baseline. Per step: each run's mean top-1 and seed spread (sample std),
and every other run's difference from the baseline with a 95 % Welch interval
(``fidelity.welch_interval``; it needs >= 2 finished seeds on both sides, else the interval
is n/a). A step a run does not have, or has no finished seed of, shows as missing. Runs are
read through the report's loader (``report.load_run`` / ``report.summarize``), so a run
folder that the report refuses is refused here too, with the same one-line reason.

Output: ``compare.csv`` (a row per step, the step's name first; per run ``<label>_status``,
``_n``, ``_mean``, ``_std`` and, after the baseline, ``_diff``, ``_diff_lo``, ``_diff_hi``),
``compare.md``, ``compare.tex`` and ``compare.png``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigError
from .fidelity import welch_interval
from .files import atomic_write_bytes, atomic_write_text, check_writable_dir, replace_entries
from .provenance import describe_jobs
from .runfolder import NOT_IN_FINGERPRINT, differing

LEVEL = 0.95
STAT_COLUMNS = ("status", "n", "mean", "std")
DIFF_COLUMNS = ("diff", "diff_lo", "diff_hi")
DPI = 120


@dataclass(frozen=True)
class RunInfo:
    """One compared run: its label (column prefix) and what it was trained with."""

    label: str
    run_dir: Path
    roadmap: str
    recipe: str
    lr: float
    data: str
    proxy: str
    seeds: tuple[int, ...]
    code: str
    machine: str
    differs: str
    """What differs from the baseline's run.json (recipe values, proxy, data); "" for the baseline."""


@dataclass(frozen=True)
class Comparison:
    runs: tuple[RunInfo, ...]
    table: pd.DataFrame
    """The csv table: a row per step (union of the runs' steps, the baseline's order first)."""


def _labels(run_dirs: Sequence[Path]) -> list[str]:
    """Folder names made safe for column names, numbered where two are equal."""
    out: list[str] = []
    for d in run_dirs:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(d).resolve().name) or "run"
        label, k = base, 2
        while label in out:
            label, k = f"{base}_{k}", k + 1
        out.append(label)
    return out


def _proxy_words(proxy: Any) -> str:
    if not isinstance(proxy, dict):
        return "?"
    rules = [f"{k} {proxy[k]}" for k in ("width", "depth", "stem_stride", "init", "layer_scale")
             if proxy.get(k) not in (None, 1, 1.0, "paper")]
    return ", ".join(rules) or "none (paper scale)"


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    recipe = {k: v for k, v in meta["recipe"]["values"].items() if k not in NOT_IN_FINGERPRINT}
    proxy = {k: v for k, v in (meta.get("proxy") or {}).items() if k not in ("note", "low_res")}
    return {"recipe": recipe, "proxy": proxy, "data": meta.get("data"), "global_batch": meta.get("global_batch")}


def compare_runs(run_dirs: Sequence[Path]) -> Comparison:
    """Read every run (nothing is written) and build the side-by-side table."""
    from .report import load_run, summarize

    if len(run_dirs) < 2:
        raise ConfigError(f"compare: give at least two run folders (got {len(run_dirs)})")
    labels = _labels(run_dirs)
    runs, tables, infos = [], [], []
    for d in run_dirs:
        run = load_run(Path(d))
        runs.append(run)
        tables.append(summarize(run).set_index("step"))
    base_meta = runs[0].meta
    for label, run in zip(labels, runs):
        m = run.meta
        diff = "" if run is runs[0] else ", ".join(differing(_identity(base_meta), _identity(m))) or "nothing"  # type: ignore[arg-type]
        infos.append(RunInfo(label=label, run_dir=run.run_dir, roadmap=run.roadmap.name, recipe=m["recipe"]["name"],
                             lr=float(m.get("lr", math.nan)), data=str(m.get("data", "?")),
                             proxy=_proxy_words(m.get("proxy")), seeds=run.seeds,
                             code=describe_jobs(jobs := [r for by in run.results.values() for r in by.values()],
                                                "code", m.get("code")),
                             machine=describe_jobs(jobs, "machine", m.get("machine")),
                             differs=diff))
    chosen = [set(m) if isinstance(m := run.meta.get("steps"), list) else set(run.roadmap.names)
              for run in runs]  # a step no run trained is left out, not shown as missing everywhere
    steps = [s for s in dict.fromkeys(s for run in runs for s in run.roadmap.names) if any(s in c for c in chosen)]
    shared = set(runs[0].roadmap.names)
    for run in runs[1:]:
        if not shared & set(run.roadmap.names):
            raise ConfigError(f"compare: {run.run_dir} shares no step name with the baseline {runs[0].run_dir} "
                              f"(roadmaps {runs[0].roadmap.name} and {run.roadmap.name})")
    return Comparison(runs=tuple(infos), table=_table(steps, labels, tables))


def _table(steps: list[str], labels: list[str], tables: list[pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for step in steps:
        row: dict[str, Any] = {"step": step}
        stats = []
        for label, t in zip(labels, tables):
            if step in t.index:
                r = t.loc[step]
                n, mean, std = int(r["n"]), float(r["top1_mean"]), float(r["top1_std"])
                status = str(r["status"]) if n or str(r["status"]).startswith("missing") else f"missing ({r['status']})"
            else:
                n, mean, std, status = 0, math.nan, math.nan, "missing (not in this run's roadmap)"
            stats.append((n, mean, std))
            row |= {f"{label}_status": status, f"{label}_n": n, f"{label}_mean": mean, f"{label}_std": std}
            if len(stats) > 1:
                (n0, m0, s0), (n1, m1, s1) = stats[0], stats[-1]
                diff = welch_interval(m1, s1, n1, m0, s0, n0, LEVEL) if n0 and n1 else (math.nan,) * 3
                row |= dict(zip((f"{label}_{c}" for c in DIFF_COLUMNS), diff))
        rows.append(row)
    return pd.DataFrame(rows)


# --- writing -------------------------------------------------------------------------------------

def _cell(row: pd.Series, label: str, pm: str) -> str:
    n = int(row[f"{label}_n"])
    if not n:
        return str(row[f"{label}_status"])
    text = f"{row[f'{label}_mean']:.2f}"
    if n >= 2:
        text += f" {pm} {row[f'{label}_std']:.2f}"
    return text + f" (n={n})"


def _diff_cell(row: pd.Series, label: str) -> str:
    d, lo, hi = (row[f"{label}_{c}"] for c in DIFF_COLUMNS)
    if math.isnan(d):
        return "missing"
    if math.isnan(lo):
        return f"{d:+.2f} (interval n/a: < 2 seeds)"
    mark = " *" if lo > 0 or hi < 0 else ""
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]{mark}"


def display_table(cmp: Comparison, pm: str = "±") -> pd.DataFrame:
    """The human table (strings): top-1 per run, then each run's difference from the baseline."""
    base = cmp.runs[0].label
    shown: dict[str, list[str]] = {"step": list(cmp.table["step"])}
    for info in cmp.runs:
        shown[f"{info.label} top-1"] = [_cell(r, info.label, pm) for _, r in cmp.table.iterrows()]
    for info in cmp.runs[1:]:
        shown[f"{info.label} - {base}"] = [_diff_cell(r, info.label) for _, r in cmp.table.iterrows()]
    return pd.DataFrame(shown)


def to_markdown(cmp: Comparison) -> str:
    base = cmp.runs[0]
    runs = pd.DataFrame([{"run": i.label, "roadmap": i.roadmap, "recipe": i.recipe, "lr": f"{i.lr:.3g}",
                          "data": i.data, "proxy": i.proxy, "seeds": ", ".join(map(str, i.seeds)),
                          "code": i.code, "machine": i.machine} for i in cmp.runs])
    lines = ["# Runs side by side", "", f"Baseline: `{base.label}` (`{base.run_dir}`).", "",
             runs.to_markdown(index=False, disable_numparse=True), ""]
    lines += [f"- `{i.label}` differs from the baseline in: {i.differs}" for i in cmp.runs[1:]] + [""]
    lines += [display_table(cmp).to_markdown(index=False, disable_numparse=True), "",
              "- top-1: mean ± sample std (ddof=1) over the finished seeds, n = finished seeds.",
              f"- `X - {base.label}`: difference of mean top-1 from the baseline, with its {LEVEL:.0%} Welch "
              "interval (Welch-Satterthwaite df; needs >= 2 finished seeds on both sides); * = the interval "
              "excludes 0.",
              "- missing: the run has no such step, or no finished seed of it.", ""]
    return "\n".join(lines)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def _tex(text: Any) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def to_latex(cmp: Comparison) -> str:
    """A booktabs table body (``\\usepackage{booktabs}``)."""
    shown = display_table(cmp)
    lines = [f"% runs side by side ({', '.join(i.label for i in cmp.runs)}): generated by `run_ablation.py compare`;"
             f" differences from {cmp.runs[0].label} with {LEVEL:.0%} Welch intervals",
             r"\begin{tabular}{l" + "r" * (len(shown.columns) - 1) + "}", r"\toprule",
             " & ".join(_tex(c) for c in shown.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(v) for v in r) + r" \\" for _, r in shown.iterrows()]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}", ""])


def figure(cmp: Comparison) -> Any:
    """Left: each run's mean top-1 ± seed std per step; right: each run's difference from the
    baseline with its 95 % interval. A missing point is a note at the left edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, n = cmp.table, len(cmp.table)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.0, 0.45 * n * max(1, len(cmp.runs) / 2) + 2.0), dpi=DPI,
                                  sharey=True, layout="constrained", gridspec_kw={"width_ratios": [1.2, 1.0]})
    k = len(cmp.runs)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, info in enumerate(cmp.runs):
        y = [i + (j - (k - 1) / 2) * 0.8 / k for i in range(n)]
        c = colors[j % len(colors)]
        ax.errorbar(t[f"{info.label}_mean"], y, xerr=t[f"{info.label}_std"].fillna(0), fmt="o", color=c, capsize=3,
                    ms=5, label=f"{info.label} ({info.recipe}, lr {info.lr:.3g})")
        for yi, mean in zip(y, t[f"{info.label}_mean"]):
            if math.isnan(mean):
                ax.annotate(f"{info.label}: missing", (0.01, yi), xycoords=("axes fraction", "data"), color=c,
                            fontsize=7, va="center", style="italic")
        if j:
            d, lo, hi = (t[f"{info.label}_{c_}"] for c_ in DIFF_COLUMNS)
            err = [(d - lo).fillna(0), (hi - d).fillna(0)]
            ax2.errorbar(d, y, xerr=err, fmt="s", color=c, capsize=3, ms=5, label=f"{info.label} - {cmp.runs[0].label}")
    ax2.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(range(n), list(t["step"]), fontsize=9)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("top-1 (%), mean ± seed std")
    ax2.set_xlabel(f"difference from {cmp.runs[0].label} (points), {LEVEL:.0%} Welch interval")
    for a in (ax, ax2):
        a.grid(axis="x", alpha=0.3)
        a.legend(fontsize=8, loc="best")
    fig.suptitle(f"runs side by side: {', '.join(i.label for i in cmp.runs)}", fontsize=11)
    return fig


def write_comparison(cmp: Comparison, out: Path) -> list[Path]:
    """``compare.csv``, ``.md``, ``.tex`` and ``.png`` in ``out``, each written atomically."""
    out = Path(out)
    check_writable_dir(out)
    fig = figure(cmp)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    with replace_entries(out) as stage:  # the four files replaced together, or none
        staged = [stage / f"compare.{ext}" for ext in ("csv", "md", "tex", "png")]
        atomic_write_text(staged[0], cmp.table.to_csv(index=False, float_format="%.6g"))
        atomic_write_text(staged[1], to_markdown(cmp))
        atomic_write_text(staged[2], to_latex(cmp))
        atomic_write_bytes(staged[3], buf.getvalue())
    return [out / p.name for p in staged]


__all__ = ["Comparison", "RunInfo", "compare_runs", "display_table", "to_latex", "to_markdown", "write_comparison"]
