"""The report's three figures: the paper's Figure 2 redrawn from the run (``roadmap``),
accuracy against compute (``acc_vs_gmacs``) and the validation curves (``curves``), drawn with
matplotlib (imported on first use) at a fixed size and DPI."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from ..files import atomic_write_bytes
from ..fmt import fixed, gmacs, significant
from .record import ReportRecord, Status

DPI = 120
"""Figures are saved at a fixed DPI and size (no tight bbox), so their pixel size is known."""

ADOPTED, BRANCH, PAPER, FAILED = "#3b6fb6", "#a9c4e8", "#d9822b", "#c0392b"


MIN_FONT_PT = 9.0
"""The smallest text of any figure: the page shows a figure no narrower than
:func:`min_display_px` so that this reads as at least :data:`MIN_TEXT_PX` CSS pixels."""
MIN_TEXT_PX = 10.0


def min_display_px(width_in: float) -> int:
    """The narrowest display (CSS px) of a figure ``width_in`` inches wide at which its smallest
    text (:data:`MIN_FONT_PT`) is :data:`MIN_TEXT_PX` tall: text scales with the displayed width."""
    return math.ceil(MIN_TEXT_PX * 72.0 * width_in / MIN_FONT_PT)


def roadmap_figsize(n_steps: int) -> tuple[float, float]:
    """Inches; times ``DPI`` gives whole pixels (7.5 in x (0.36 in per step + 1.9 in))."""
    return 7.5, 0.36 * n_steps + 1.9


def curves_figsize(n_steps: int, ncols: int = 3) -> tuple[float, float]:
    nrows = max(1, math.ceil(n_steps / ncols))
    return 2.5 * ncols, 2.0 * nrows + 0.75


ACC_VS_GMACS_SIZE = (6.5, 5.0)


def save(fig: Any, path: Path, fmt: str) -> None:
    """``fig`` as ``fmt`` at :data:`DPI`, without dates or versions (reruns give the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, metadata={"Software": None} if fmt == "png" else {"Date": None})
    atomic_write_bytes(path, buf.getvalue())


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, with stable SVG ids."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    matplotlib.rcParams["svg.hashsalt"] = "modernize"  # stable SVG ids: reruns give the same file
    import matplotlib.pyplot as plt

    return plt


def roadmap_figure(record: ReportRecord) -> Any:
    """Figure 2 of the paper from this run: a bar per step (top-1, seed std as error bar),
    GMACs beside each bar, explored branches hatched. The paper's top-1 (diamonds, with its
    GFLOPs) sits in a panel of its own on the same rows: its numbers are ImageNet at 224 px,
    ours are not, so the two never share an accuracy axis."""
    plt = pyplot()
    table, failed = record.frame(), [r.status is Status.FAILED for r in record.rows]
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
            ax.text(lo + 0.01 * (hi - lo), i, str(r["status"])[:70], va="center", ha="left",
                    fontsize=MIN_FONT_PT,
                    color=FAILED if failed[i] else "0.4", style="italic")
            continue
        ax.barh(i, r["top1_mean"] - lo, left=lo, height=0.62, color=ADOPTED if adopted else BRANCH,
                hatch=None if adopted else "///", edgecolor="white" if adopted else ADOPTED, linewidth=0.6)
        if r["n"] >= 2:
            ax.errorbar(r["top1_mean"], i, xerr=r["top1_std"], fmt="none", ecolor="black", elinewidth=1, capsize=3)
        label = fixed(r["top1_mean"])
        if not math.isnan(r["gmacs"]):
            label += f"  {gmacs(r['gmacs'])} G"
        if not math.isnan(r["infer_img_s"]):
            label += f"  {significant(r['infer_img_s'])} img/s"
        x_text = r["top1_mean"] + (0 if math.isnan(r["top1_std"]) else r["top1_std"]) + 0.012 * (hi - lo)
        ax.text(x_text, i, label, va="center", ha="left", fontsize=MIN_FONT_PT)
    ax.set_xlim(lo, hi)
    ax.set_yticks(range(n), [s if a else f"{s} (branch)" for s, a in zip(table["step"], table["adopted"])],
                  fontsize=9)
    ax.set_ylim(n - 0.4, -0.6)
    res = table["resolution"].dropna().unique()
    at = f" at {int(res[0])} px" if len(res) == 1 else ""
    extra = "; img/s = inference throughput" if table["infer_img_s"].notna().any() else ""
    ax.set_xlabel(f"top-1 (%) on {record.run.data}, mean ± seed std\nG = GMACs{at}{extra}", fontsize=9)
    ax.set_title(f"this run: recipe {record.run.recipe}, {len(record.run.seeds)} seed(s)", fontsize=10)
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
            text = fixed(r["paper_top1"]) + ("" if math.isnan(r["paper_gflops"]) else f"  {fixed(r['paper_gflops'])} G")
            ax2.text(r["paper_top1"] + 0.04 * pspan, i, text, va="center", ha="left", fontsize=MIN_FONT_PT,
                     color="0.25")
        ax2.set_xlim(p_lo, p_hi)
        ax2.set_xlabel("ImageNet-1K top-1 (%)\nG = GFLOPs at 224 px", fontsize=9)
        ax2.set_title("paper (Liu et al. 2022)", fontsize=10, color=PAPER)
        ax2.grid(axis="x", alpha=0.3)
        ax2.tick_params(axis="y", length=0)
        handles.append(plt.Line2D([], [], marker="D", color=PAPER, linestyle="none",
                                  label="paper top-1 (hollow: branch)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=MIN_FONT_PT,
               frameon=False)
    fig.suptitle(f"{record.run.roadmap}: one bar per step", fontsize=11)
    return fig


def acc_vs_gmacs_figure(record: ReportRecord) -> Any:
    """Accuracy against compute; the adopted chain is joined parent -> step."""
    plt = pyplot()
    table = record.frame()
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
        ax.annotate(r["step"], (r["gmacs"], r["top1_mean"]), xytext=(5, 4), textcoords="offset points",
                    fontsize=MIN_FONT_PT)
    res = table["resolution"].dropna().unique()
    ax.set_xlabel(f"GMACs per image{f' at {int(res[0])} px' if len(res) == 1 else ''} (conv + linear)")
    ax.set_ylabel(f"top-1 (%) on {record.run.data}")
    ax.set_title(f"{record.run.roadmap}: accuracy vs compute")
    ax.grid(alpha=0.3)
    missing = [s for s in table["step"] if s not in pos]
    if missing:
        ax.text(0.01, 0.01, "not shown (no result): " + ", ".join(missing), transform=ax.transAxes,
                fontsize=MIN_FONT_PT,
                color="0.4", va="bottom", wrap=True)
    ax.legend(fontsize=MIN_FONT_PT, loc="lower right")
    return fig


def curves_figure(record: ReportRecord, ncols: int = 3) -> Any:
    """Validation top-1 per epoch, one panel per step, one line per seed (failed: red)."""
    plt = pyplot()
    table = record.frame()
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
        logs = sorted((c for c in record.curves if c.step == step), key=lambda c: c.seed)
        for log in logs:
            failed = log.status is Status.FAILED
            color = FAILED if failed else (ADOPTED if table["adopted"].iloc[k] else "#6d8fc4")
            # A line needs two points: a one-epoch run (the quick recipe) logs one, drawn as a marker.
            ax.plot(log.epoch, log.top1, color=color, lw=1.1, alpha=0.85, marker="o" if len(log.epoch) < 3 else None,
                    ms=4, linestyle="--" if log.status is not Status.DONE else "-")
            if failed and log.epoch:
                ax.plot(log.epoch[-1], log.top1[-1], "x", color=FAILED)
        if not logs:
            ax.text(0.5, 0.5, str(table["status"].iloc[k])[:28], transform=ax.transAxes, ha="center", va="center",
                    fontsize=MIN_FONT_PT, color="0.4", style="italic")
        ax.set_title(step + ("" if table["adopted"].iloc[k] else " (branch)"), fontsize=MIN_FONT_PT)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=MIN_FONT_PT)
        if k + ncols >= n:  # the panel below is empty: this one carries the epoch ticks
            ax.xaxis.set_tick_params(labelbottom=True)
    fig.supxlabel("epoch", fontsize=9, y=0.12 / h)
    fig.supylabel(f"val top-1 (%), {record.run.data}", fontsize=9, x=0.12 / w)
    fig.suptitle(f"{record.run.roadmap}: training curves (one line per seed; dashed = not finished)", fontsize=10,
                 y=1 - 0.15 / h)
    return fig
