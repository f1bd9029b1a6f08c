"""Writing a report folder: :func:`write_report` computes a run's record once and
:func:`write_files` renders every file of the folder from that record alone (also for
``report --page-only``, which reads the record back from ``report.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..checks.reference import SEEDS_FILE, check_reproduction, load_reference
from ..errors import ConfigError
from ..files import atomic_write_text, check_writable_dir, replace_entries
from ..fmt import CSV_FLOAT
from ..paths import check_output_kind
from ..roadmap import Roadmap
from . import figures
from .load import load_run
from .migrate import record_from_folder, upgrade
from .page import write_page
from .record import RECORD_FILE, ReportRecord, decode
from .render import agreement_markdown, to_latex, to_markdown
from .table import analyze

FIGURES = (("roadmap", ("png", "svg")), ("acc_vs_gmacs", ("png",)), ("curves", ("png",)))
"""Each figure's name (``figures.<name>_figure`` draws it) and the formats it is saved in."""


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: the folder, the files, and the record they render."""

    out: Path
    paths: list[Path]
    record: ReportRecord

    @property
    def table(self) -> pd.DataFrame:
        return self.record.frame()


def write_report(run_dir: Path, out: Path | None = None, *, reference: Path | None = None) -> Report:
    """Read RUN_DIR, compute its record (and, with ``reference``, the reproduction check) and
    write every file into ``out`` (default ``RUN_DIR/report/``). All inputs are read and checked
    before the first write; every file is written atomically."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report"
    # the reference read whole and checked (refused when it is the output folder) before any write
    ref = load_reference(reference, out=out) if reference is not None else None
    run = load_run(run_dir, out)
    check_writable_dir(out)  # a bad --out fails now, before the figures
    check_output_kind(out, "report folder")
    record = analyze(run)
    if ref is not None:
        record = replace(record, reproduction=check_reproduction(record.seeds_frame(), ref))
    return Report(out=out, paths=write_files(record, out, roadmap=run.roadmap), record=record)


def read_record(folder: Path) -> ReportRecord:
    """The record of a written report folder: its ``report.json``, else one migrated from the
    files of a report written before ``report.json`` existed."""
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        return record_from_folder(Path(folder))
    try:
        return decode(ReportRecord, upgrade(json.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a report record ({type(exc).__name__}: {exc})"[:300]) from None


def write_files(record: ReportRecord, out: Path, *, roadmap: Roadmap | None = None) -> list[Path]:
    """Every file of a report folder, rendered from ``record``: report.json, the tables, the
    agreement summary, the figures (a figure the record has no data for is kept as it is) and
    index.html with blocks/ (``roadmap``: the run's, else the record's roadmap is loaded). The one
    place a report folder is written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with replace_entries(out) as stage:  # all files replaced together, or none (a full disk)

        def text(name: str, body: str) -> None:
            atomic_write_text(stage / name, body)
            paths.append(out / name)

        text(RECORD_FILE, record.to_json())
        text("table.csv", record.frame().to_csv(index=False, float_format=CSV_FLOAT))
        text("table.md", to_markdown(record))
        text("table.tex", to_latex(record))
        if record.per_seed:
            text(SEEDS_FILE, record.seeds_frame().to_csv(index=False, float_format=CSV_FLOAT))
        text("agreement.md", f"# {record.run.roadmap}\n\n" + agreement_markdown(record))
        if record.reproduction is not None:
            text("reproduction.md", record.reproduction.markdown())
        paths += [out / p.name for p in _figures(record, stage)]
        paths.append(out / write_page(record, stage, roadmap).name)
    if not record.has_curves:  # a figure of panels without curves says nothing: no stale one stays
        (out / "curves.png").unlink(missing_ok=True)
    return paths


def _figures(record: ReportRecord, out: Path) -> list[Path]:
    plt = figures.pyplot()
    paths = []
    for name, fmts in FIGURES:
        if name == "curves" and not record.has_curves:
            continue  # one evaluation per job: no curve to draw (an old figure is removed below)
        fig = getattr(figures, f"{name}_figure")(record)
        try:
            for fmt in fmts:
                figures.save(fig, out / f"{name}.{fmt}", fmt)
                paths.append(out / f"{name}.{fmt}")
        finally:
            plt.close(fig)
    return paths


def build_report(run_dir: Path, out: Path | None = None) -> list[Path]:
    """:func:`write_report`, returning only the written paths."""
    return write_report(run_dir, out).paths


def rebuild(folder: Path) -> list[Path]:
    """``report --page-only``: every rendering of a report folder again, from its record alone."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"report folder '{folder}': no such folder")
    record = read_record(folder)
    check_writable_dir(folder)
    check_output_kind(folder, "report folder", "report --page-only")
    return write_files(record, folder)
