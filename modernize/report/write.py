"""``write_report``: a run's report files, every input read and checked before the first write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..fidelity import Fidelity
from ..files import atomic_write_text, check_writable_dir, replace_entries
from ..html_page import write_run_page
from ..reference import SEEDS_FILE, seeds_frame
from . import figures
from .load import load_run
from .render import agreement_markdown, to_latex, to_markdown
from .table import Agreement, analyze


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
    found = analyze(run)
    table = found.table
    shown = table.copy()  # what the caller gets back, untouched by the writers below
    plt = figures._pyplot()
    drawn = {"roadmap": figures.roadmap_figure(run, table), "acc_vs_gmacs": figures.acc_vs_gmacs_figure(run, table),
             "curves": figures.curves_figure(run, table)}
    paths: list[Path] = []
    with replace_entries(out) as stage:  # all files replaced together, or none (a full disk)

        def text(name: str, body: str) -> None:
            atomic_write_text(stage / name, body)
            paths.append(out / name)

        text("table.csv", table.to_csv(index=False, float_format="%.6g"))
        text("table.md", to_markdown(run, found))
        text("table.tex", to_latex(run, table))
        text(SEEDS_FILE, seeds_frame(run.results).to_csv(index=False, float_format="%.6g"))
        text("agreement.md", f"# {run.roadmap.name}\n\n" + agreement_markdown(found))
        try:
            for name, fmts in (("roadmap", ("png", "svg")), ("acc_vs_gmacs", ("png",)), ("curves", ("png",))):
                for fmt in fmts:
                    figures._save(drawn[name], stage / f"{name}.{fmt}", fmt)
                    paths.append(out / f"{name}.{fmt}")
        finally:
            for fig in drawn.values():
                plt.close(fig)
        paths.append(out / write_run_page(run, stage).name)  # index.html (and blocks/): modernize/html_page.py
    return Report(out=out, paths=paths, table=shown, agreement=found.agreement, fidelity=found.fidelity)


def build_report(run_dir: Path, out: Path | None = None) -> list[Path]:
    """:func:`write_report`, returning only the written paths."""
    return write_report(run_dir, out).paths
