"""Reports of a training run (``run_ablation.py report RUN_DIR``): the ablation table and
the paper's Figure 2 redrawn from the run, next to the paper's numbers.

Input is the RUN_DIR the training engine writes, read through ``modernize.runfolder`` (where
its files are defined: ``run.json``, ``<step>/seed<k>/result.json`` and ``log.csv``), plus an
optional ``bench.csv`` (step, infer_img_s, train_img_s, ...).

Output (default ``RUN_DIR/report/``, so a report always sits beside the run it describes;
a committed reference under ``reports/<roadmap>/`` is written only by an explicit ``--out``):
``table.md``, ``table.csv``, ``table.tex``, ``seeds.csv``, ``agreement.md``, ``roadmap.png``,
``roadmap.svg``, ``acc_vs_gmacs.png``, ``curves.png``. Every step of the roadmap gets a row, in
roadmap order; failed, running and missing steps say so instead of disappearing.

Noise rule: a step's delta (its mean top-1 minus its parent's) is *within seed noise* when
Welch's two-sided t-test on the two steps' seed results gives p > 0.05. It needs at least
two finished seeds on both sides; otherwise the mark is ``n/a``.

One module per concern::

    load.py      load_run: run.json, roadmap, results, logs, bench table; jobs re-checked
    table.py     summarize / analyze: the table, the paper checks and agreement (once per report)
    render.py    markdown, LaTeX and the terminal's table; the agreement summary
    figures.py   the roadmap figure, accuracy vs compute, training curves
    write.py     write_report / build_report: all of it into the output folder
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
from .render import agreement_markdown, display_table, to_latex, to_markdown
from .table import COLUMNS, NOISE_ALPHA, NOISE_RULE, Agreement, Findings, agreement, analyze, summarize
from .write import Report, build_report, write_report

__all__ = ["ACC_VS_GMACS_SIZE", "COLUMNS", "DPI", "NOISE_ALPHA", "NOISE_RULE", "Agreement", "Findings", "Report",
           "Run", "acc_vs_gmacs_figure", "agreement", "agreement_markdown", "analyze", "build_report",
           "curves_figsize", "curves_figure", "display_table", "load_run", "roadmap_figsize", "roadmap_figure",
           "summarize", "to_latex", "to_markdown", "write_report"]
