"""Reports of a training run (``run_ablation.py report RUN_DIR``): the ablation table and
the paper's Figure 2 redrawn from the run, next to the paper's numbers.

Input is the RUN_DIR the training engine writes, read through ``modernize.runfolder`` (where
its files are defined: ``run.json``, ``<step>/seed<k>/result.json`` and ``log.csv``), plus an
optional ``bench.csv`` (step, infer_img_s, train_img_s, ...).

Output (default ``RUN_DIR/report/``, so a report always sits beside the run it describes;
a committed reference under ``reports/<roadmap>/`` is written only by an explicit ``--out``):
``report.json`` (the record: every row with its status, the paper checks, the agreement, the
run's provenance, every seed, the curves and the drawn specs), rendered into ``table.md``,
``table.csv``, ``table.tex``, ``seeds.csv``, ``agreement.md``, ``roadmap.png``, ``roadmap.svg``,
``acc_vs_gmacs.png``, ``curves.png`` and ``index.html``. Every step of the roadmap gets a row, in
roadmap order; failed, running, stale and missing steps say so instead of disappearing.
``report FOLDER --page-only`` renders all of it again from ``report.json`` alone.

Noise rule: a step's delta (its mean top-1 minus its parent's) is *within seed noise* when
Welch's two-sided t-test on the two steps' seed results gives p > 0.05. It needs at least
two finished seeds on both sides; otherwise the mark is ``n/a``.

One module per concern::

    load.py      load_run: run.json, roadmap, results, logs, bench table; jobs re-checked
    record.py    ReportRecord: the typed record and its JSON form (report.json)
    table.py     analyze: the run's record, computed once (rows, paper checks, agreement)
    facts.py     provenance, seeds, curves and drawn specs of a run, for the record
    migrate.py   older report.json schemas and report folders without report.json, as records
    render.py    markdown, LaTeX and the terminal's table; the agreement summary
    figures.py   the roadmap figure, accuracy vs compute, training curves
    page.py      index.html and blocks/
    write.py     write_report / write_files / rebuild: every file of a report folder from the record
"""

from __future__ import annotations

from .figures import (
    ACC_VS_GMACS_SIZE,
    DPI,
    acc_vs_gmacs_figure,
    curves_figsize,
    curves_figure,
    roadmap_figsize,
    roadmap_figure,
)
from .load import Run, load_run
from .record import RECORD_FILE, Agreement, ReportRecord, Row, Status
from .render import agreement_markdown, display_table, to_latex, to_markdown
from .table import COLUMNS, NOISE_ALPHA, NOISE_RULE, agreement, analyze, summarize
from .write import Report, build_report, read_record, rebuild, write_files, write_report

__all__ = ["ACC_VS_GMACS_SIZE", "COLUMNS", "DPI", "NOISE_ALPHA", "NOISE_RULE", "RECORD_FILE", "Agreement", "Report",
           "ReportRecord", "Row", "Run", "Status", "acc_vs_gmacs_figure", "agreement", "agreement_markdown", "analyze",
           "build_report", "curves_figsize", "curves_figure", "display_table", "load_run", "read_record", "rebuild",
           "roadmap_figsize", "roadmap_figure", "summarize", "to_latex", "to_markdown", "write_files",
           "write_report"]
