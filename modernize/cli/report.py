"""``run_ablation.py report RUN_DIR``: the ablation table and figures of a training run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def print_report(run_dir: Path, out: Path | None = None, *, reference: Path | None = None) -> None:
    """Write the report of ``run_dir`` (default into ``RUN_DIR/report/``), then print its table;
    with ``reference`` (a report folder), also the step-by-step reproduction check."""
    from ..reference import check_reproduction, load_reference  # pandas
    from ..report import display_table, write_report  # pandas, matplotlib

    # the reference is read whole (and refused when it is the output folder) before the first write
    ref = load_reference(reference, out=out if out is not None else run_dir / "report") if reference else None
    report = write_report(run_dir, out)  # files first: a closed stdout pipe must not cost the report
    table, agr = report.table, report.agreement
    print(display_table(table, pm="+-").drop(columns=["change", "from", "paper GFLOPs"], errors="ignore")
          .to_string(index=False))
    rho = _signed(agr.spearman, 3)
    fid = report.fidelity
    final, anchor, diff, lo, hi = fid.end_to_end
    interval = f" [{_signed(lo)}, {_signed(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    if not table["paper_top1"].notna().any():
        print(f"paper checks: none (this roadmap has no paper numbers); {final} - {anchor} = {_signed(diff)}{interval}")
    else:
        print(f"paper checks: robust steps {fid.count('robust', 'agrees')}/{fid.robust} agree, "
              f"{fid.count('robust', 'disagrees')} disagree; equivalence steps "
              f"{fid.count('equivalence', 'passes')}/{sum(c.kind == 'equivalence' for c in fid.checks)} pass, "
              f"{fid.count('equivalence', 'fails')} fail; {len(fid.not_checked)} n/a; "
              f"{final} - {anchor} = {_signed(diff)}{interval}")
    print(f"secondary: delta sign {agr.sign_matches}/{agr.compared} over all steps, Spearman {rho}")
    if ref is not None:
        import pandas as pd

        from ..reference import SEEDS_FILE, write_reproduction

        check = check_reproduction(pd.read_csv(report.out / SEEDS_FILE), ref)
        report.paths.append(write_reproduction(check, report.out))
        print(check.summary())
    print(f"wrote {len(report.paths)} files to {report.out}")


def _signed(x: float, digits: int = 2) -> str:
    """``+1.23``, or ``n/a`` for a figure that could not be computed (never ``nan``)."""
    return f"{x:+.{digits}f}" if math.isfinite(x) else "n/a"


def cmd_report(args: argparse.Namespace) -> int:
    if args.page_only:  # a written report without its run (a committed one): only index.html and blocks/
        from ..html_page import write_page_from_files  # pandas, matplotlib

        print(f"wrote {write_page_from_files(Path(args.run_dir))} and its blocks/ diagrams")
        return 0
    print_report(Path(args.run_dir), Path(args.out) if args.out else None,
                 reference=Path(args.reference) if args.reference else None)
    return 0


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="ablation table, roadmap figure and curves of a training run")
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder written by `train` (holds run.json)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report/)")
    p.add_argument("--reference", default=None, metavar="DIR",
                   help="a report folder (e.g. reports/resnet50_to_convnext_t) to check this run against, "
                        "step by step, within the reference's seed spread; writes reproduction.md")
    p.add_argument("--page-only", action="store_true",
                   help="RUN_DIR is a written report folder (table.md, table.csv, figures) whose run is gone: "
                        "rebuild only its index.html and blocks/ from those files, without the run")
    p.set_defaults(func=cmd_report)
