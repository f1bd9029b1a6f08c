"""Runs side by side (``run_ablation.py compare RUN_A RUN_B [...]``): one roadmap (or roadmaps
sharing step names) trained under different recipes, proxies, data or code versions.

The first run is the baseline. Per step: each run's mean top-1 and seed spread (sample std),
and every other run's difference from the baseline with a 95 % Welch interval
(``fidelity.welch_interval``; it needs >= 2 finished seeds on both sides, else the interval
is n/a). A step a run does not have, or has no finished seed of, shows as missing. Runs are
read through the report's loader (``report.load_run`` / ``report.summarize``), so a run
folder that the report refuses is refused here too, with the same one-line reason.

The comparison is computed once as a record (:class:`Comparison`: a :class:`Cell` per step and
run, with the report's status enum) and written as ``compare.json``; ``compare.csv`` (a row per
step, the step's name first; per run ``<label>_status``, ``_n``, ``_mean``, ``_std`` and, after
the baseline, ``_diff``, ``_diff_lo``, ``_diff_hi``), ``compare.md``, ``compare.tex`` and
``compare.png`` are rendered from it with the report's number formatter.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..checks.fidelity import welch_interval
from ..errors import ConfigError
from ..files import atomic_write_bytes, atomic_write_text, check_writable_dir, replace_entries
from ..fmt import CSV_FLOAT, fixed, mean_spread, significant
from ..paths import check_output_kind
from ..provenance import describe_jobs
from ..runfolder import NOT_IN_FINGERPRINT, differing
from .facts import shown_path
from .record import Row, Status, decode, dumps, loads, status_text
from .render import tex

LEVEL = 0.95
DIFF_COLUMNS = ("diff", "diff_lo", "diff_hi")
DPI = 120
SCHEMA = 1
RECORD_FILE = "compare.json"


@dataclass(frozen=True)
class RunInfo:
    """One compared run: its label (column prefix) and what it was trained with."""

    label: str
    run_dir: str
    roadmap: str
    recipe: str
    lr: float
    data: str
    proxy: dict[str, Any]
    """run.json's proxy settings (the rules that differ from the paper's scale)."""
    seeds: tuple[int, ...]
    code: str
    machine: str
    differs: str
    """What differs from the baseline's run.json (recipe values, proxy, data); "" for the baseline."""

    @property
    def proxy_words(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.proxy.items()) or "none (paper scale)"


@dataclass(frozen=True)
class Cell:
    """One run's result for one step, and (after the baseline) its difference from the baseline."""

    status: Status
    status_reason: str
    n: int
    mean: float
    std: float
    diff: float = math.nan
    diff_lo: float = math.nan
    diff_hi: float = math.nan

    @property
    def status_text(self) -> str:
        return status_text(self.status, self.status_reason)


@dataclass(frozen=True)
class CompareRow:
    step: str
    cells: tuple[Cell, ...]
    """One per run, in the order of :attr:`Comparison.runs`."""


@dataclass(frozen=True)
class Comparison:
    """The comparison's record: written as ``compare.json``, rendered into every other file."""

    schema: int
    runs: tuple[RunInfo, ...]
    rows: tuple[CompareRow, ...]

    @property
    def table(self) -> pd.DataFrame:
        """The csv table: a row per step (union of the runs' steps, the baseline's order first)."""
        out = []
        for row in self.rows:
            d: dict[str, Any] = {"step": row.step}
            for k, (info, c) in enumerate(zip(self.runs, row.cells)):
                d |= {f"{info.label}_status": c.status_text, f"{info.label}_n": c.n, f"{info.label}_mean": c.mean,
                      f"{info.label}_std": c.std}
                if k:
                    d |= {f"{info.label}_{name}": getattr(c, name) for name in DIFF_COLUMNS}
            out.append(d)
        return pd.DataFrame(out)

    def to_json(self) -> str:
        return dumps(self)

    @classmethod
    def from_json(cls, text: str) -> Comparison:
        return loads(cls, text, SCHEMA)


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


def _proxy_rules(proxy: Any) -> dict[str, Any]:
    """The proxy settings that differ from the paper's scale, in a fixed order."""
    if not isinstance(proxy, dict):
        return {}
    return {k: proxy[k] for k in ("width", "depth", "stem_stride", "init", "layer_scale")
            if proxy.get(k) not in (None, 1, 1.0, "paper")}


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    recipe = {k: v for k, v in meta["recipe"]["values"].items() if k not in NOT_IN_FINGERPRINT}
    proxy = meta.get("proxy") or {}
    return {"recipe": recipe, "proxy": proxy, "data": meta.get("data"), "global_batch": meta.get("global_batch")}


def compare_runs(run_dirs: Sequence[Path]) -> Comparison:
    """Read every run (nothing is written) and build the side-by-side table."""
    from .load import load_run
    from .table import analyze

    if len(run_dirs) < 2:
        raise ConfigError(f"compare: give at least two run folders (got {len(run_dirs)})")
    seen: dict[Path, Path] = {}
    for d in run_dirs:  # a run beside itself "differs by nothing": a comparison that checks nothing
        key = Path(d).resolve()
        if key in seen:
            raise ConfigError(f"compare: {seen[key]} and {d} are one run folder; compare different runs")
        seen[key] = Path(d)
    labels = _labels(run_dirs)
    runs, tables, infos = [], [], []
    for d in run_dirs:
        run = load_run(Path(d))
        runs.append(run)
        tables.append({r.step: r for r in analyze(run).rows})
    base_meta = runs[0].meta
    for label, run in zip(labels, runs):
        m = run.meta
        diff = "" if run is runs[0] else ", ".join(differing(_identity(base_meta), _identity(m))) or "nothing"  # type: ignore[arg-type]
        infos.append(RunInfo(label=label, run_dir=shown_path(run.run_dir), roadmap=run.roadmap.name,
                             recipe=m["recipe"]["name"],
                             lr=float(m.get("lr", math.nan)), data=str(m.get("data", "?")),
                             proxy=_proxy_rules(m.get("proxy")), seeds=run.seeds,
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
    return Comparison(schema=SCHEMA, runs=tuple(infos), rows=_rows(steps, tables))


def _cell(row: Row | None) -> Cell:
    if row is None:
        return Cell(Status.MISSING, "not in this run's roadmap", 0, math.nan, math.nan)
    if row.n or row.status is Status.MISSING:
        return Cell(row.status, row.status_reason, row.n, row.top1_mean, row.top1_std)
    return Cell(Status.MISSING, row.status_text, 0, math.nan, math.nan)  # no finished seed: say why


def _rows(steps: list[str], tables: list[dict[str, Row]]) -> tuple[CompareRow, ...]:
    out = []
    for step in steps:
        cells = [_cell(t.get(step)) for t in tables]
        base = cells[0]
        for k in range(1, len(cells)):
            c = cells[k]
            diff = (welch_interval(c.mean, c.std, c.n, base.mean, base.std, base.n, LEVEL) if base.n and c.n
                    else (math.nan,) * 3)
            cells[k] = replace(c, **dict(zip(DIFF_COLUMNS, diff)))
        out.append(CompareRow(step, tuple(cells)))
    return tuple(out)


# --- rendering -----------------------------------------------------------------------------------

def _top1_cell(c: Cell, pm: str) -> str:
    if not c.n:
        return c.status_text
    return mean_spread(c.mean, c.std, c.n, pm=pm)


def _diff_cell(c: Cell) -> str:
    if math.isnan(c.diff):
        return "missing"
    if math.isnan(c.diff_lo):
        return f"{fixed(c.diff, signed=True)} (interval n/a: < 2 seeds)"
    mark = " *" if c.diff_lo > 0 or c.diff_hi < 0 else ""
    return f"{fixed(c.diff, signed=True)} [{fixed(c.diff_lo, signed=True)}, {fixed(c.diff_hi, signed=True)}]{mark}"


def display_table(cmp: Comparison, pm: str = "±") -> pd.DataFrame:
    """The human table (strings): top-1 per run, then each run's difference from the baseline."""
    base = cmp.runs[0].label
    shown: dict[str, list[str]] = {"step": [r.step for r in cmp.rows]}
    for k, info in enumerate(cmp.runs):
        shown[f"{info.label} top-1"] = [_top1_cell(r.cells[k], pm) for r in cmp.rows]
    for k, info in enumerate(cmp.runs[1:], 1):
        shown[f"{info.label} - {base}"] = [_diff_cell(r.cells[k]) for r in cmp.rows]
    return pd.DataFrame(shown)


def to_markdown(cmp: Comparison) -> str:
    base = cmp.runs[0]
    runs = pd.DataFrame([{"run": i.label, "roadmap": i.roadmap, "recipe": i.recipe, "lr": significant(i.lr),
                          "data": i.data, "proxy": i.proxy_words, "seeds": ", ".join(map(str, i.seeds)),
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


def to_latex(cmp: Comparison) -> str:
    """A booktabs table body (``\\usepackage{booktabs}``)."""
    shown = display_table(cmp)
    lines = [f"% runs side by side ({', '.join(i.label for i in cmp.runs)}): generated by `run_ablation.py compare`;"
             f" differences from {cmp.runs[0].label} with {LEVEL:.0%} Welch intervals",
             r"\begin{tabular}{l" + "r" * (len(shown.columns) - 1) + "}", r"\toprule",
             " & ".join(tex(c) for c in shown.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(tex(v) for v in r) + r" \\" for _, r in shown.iterrows()]
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
                    ms=5, label=f"{info.label} ({info.recipe}, lr {significant(info.lr)})")
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
    check_output_kind(out, "comparison")
    fig = figure(cmp)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    with replace_entries(out) as stage:  # the record and its renderings replaced together, or none
        staged = [stage / f"compare.{ext}" for ext in ("csv", "md", "tex", "png")]
        atomic_write_text(stage / RECORD_FILE, cmp.to_json())
        atomic_write_text(staged[0], cmp.table.to_csv(index=False, float_format=CSV_FLOAT))
        atomic_write_text(staged[1], to_markdown(cmp))
        atomic_write_text(staged[2], to_latex(cmp))
        atomic_write_bytes(staged[3], buf.getvalue())
    return [out / RECORD_FILE, *(out / p.name for p in staged)]


def rerender(folder: Path) -> list[Path]:
    """Every file of a written comparison again, from its ``compare.json`` (or, for a folder
    written before it, from the record migrated out of ``compare.csv`` and ``compare.md``)."""
    from .migrate import comparison_from_folder

    folder = Path(folder)
    path = folder / RECORD_FILE
    if path.is_file():
        try:
            cmp = Comparison.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a comparison record ({type(exc).__name__}: {exc})"[:300]) from None
    else:
        cmp = decode(Comparison, comparison_from_folder(folder))
    return write_comparison(cmp, folder)


__all__ = ["Cell", "CompareRow", "Comparison", "RunInfo", "rerender",
           "compare_runs", "display_table", "to_latex", "to_markdown", "write_comparison"]
