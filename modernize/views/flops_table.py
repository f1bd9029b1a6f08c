"""The per-step complexity table (``run_ablation.py flops``): our counts beside the paper's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..complexity import Complexity, count
from ..files import atomic_write_text, replace_entries
from ..roadmap import Roadmap
from ..spec import ArchSpec

COLUMNS = ["step", "paper_row", "change", "adopted", "gmacs", "gflops_fvcore", "params_m",
           "paper_gflops", "delta_gmacs", "note"]


def flops_table(roadmap: Roadmap, resolution: int = 224) -> pd.DataFrame:
    """One row per step. ``delta_gmacs`` is ours minus the paper's printed GFLOPs; the
    ``note`` column carries the CSV's note where the paper prints an inconsistent figure."""
    cache: dict[ArchSpec, Complexity] = {}
    rows = []
    for step in roadmap:
        if step.spec not in cache:
            cache[step.spec] = count(step.spec, resolution)
        c = cache[step.spec]
        paper_gflops = float(step.paper["paper_gflops"]) if step.paper.get("paper_gflops") else None
        note = step.paper.get("note", "")
        rows.append({
            "step": step.name, "paper_row": step.paper_row or "", "change": step.change,
            "adopted": step.adopted, "gmacs": round(c.gmacs, 4), "gflops_fvcore": round(c.gflops_fvcore, 4),
            "params_m": round(c.params_m, 3),
            "paper_gflops": paper_gflops if resolution == 224 else None,
            "delta_gmacs": (round(c.gmacs - paper_gflops, 4)
                            if (paper_gflops is not None and resolution == 224) else None),
            "note": note if "inconsisten" in note else "",
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def inconsistency_notes(table: pd.DataFrame) -> list[str]:
    return [f"{r.step}: {r.note}" for r in table.itertuples() if r.note]


def to_markdown(table: pd.DataFrame, roadmap: Roadmap, resolution: int) -> str:
    shown = table.drop(columns=["note"]).copy()
    shown["adopted"] = shown["adopted"].map({True: "yes", False: "branch"})
    lines = [f"# Complexity per step: {roadmap.name}", "",
             f"Batch 1, {resolution}x{resolution} input, {roadmap.base.num_classes} classes. `gmacs`: conv + "
             "linear multiply-accumulates (the paper's GFLOPs, fvcore with norm/pool handles off); "
             "`gflops_fvcore`: fvcore's default count (norms and pooling included); `delta_gmacs`: "
             "ours minus the paper's printed figure.", "",
             shown.to_markdown(index=False, missingval="",
                               floatfmt=("", "", "", "", ".4f", ".4f", ".3f", ".2f", "+.4f")), ""]
    notes = inconsistency_notes(table)
    if notes:
        lines += ["Rows the paper prints inconsistently (we report the true count, not the printed one):", ""]
        lines += [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def write_flops_table(table: pd.DataFrame, roadmap: Roadmap, out: Path, resolution: int) -> list[Path]:
    """Write ``out/flops.csv`` and ``out/flops.md``, both replaced together or neither."""
    with replace_entries(out) as stage:
        atomic_write_text(stage / "flops.csv", table.to_csv(index=False))
        atomic_write_text(stage / "flops.md", to_markdown(table, roadmap, resolution))
    return [out / "flops.csv", out / "flops.md"]
