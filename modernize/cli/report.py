"""``run_ablation.py report RUN_DIR``: the ablation table and figures of a training run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..report import ReportRecord


def print_report(run_dir: Path, out: Path | None = None, *, reference: Path | None = None) -> None:
    """Write the report of ``run_dir`` (default into ``RUN_DIR/report/``), then print its table;
    with ``reference`` (a report folder), also the step-by-step reproduction check."""
    from ..report import write_report  # pandas, matplotlib

    report = write_report(run_dir, out, reference=reference)  # files first: a closed stdout pipe must not cost them
    print_summary(report.record)
    print(f"wrote {len(report.paths)} files to {report.out}")


def print_summary(record: ReportRecord) -> None:
    """The terminal's table and the lines under it, rendered from the record."""
    from ..fmt import fixed
    from ..report import display_table

    print(display_table(record, pm="+-").drop(columns=["change", "from", "paper GFLOPs"], errors="ignore")
          .to_string(index=False))
    agr, fid = record.agreement, record.fidelity
    final, anchor, diff, lo, hi = fid.end_to_end
    interval = f" [{fixed(lo, signed=True)}, {fixed(hi, signed=True)}]" if fixed(lo) and fixed(hi) else ""
    e2e = f"{final} - {anchor} = {fixed(diff, signed=True, empty='n/a')}{interval}"
    if not record.has_paper:
        print(f"paper checks: none (this roadmap has no paper numbers); {e2e}")
    else:
        print(f"paper checks: robust steps {fid.count('robust', 'agrees')}/{fid.robust} agree, "
              f"{fid.count('robust', 'disagrees')} disagree; equivalence steps "
              f"{fid.count('equivalence', 'passes')}/{sum(c.kind == 'equivalence' for c in fid.checks)} pass, "
              f"{fid.count('equivalence', 'fails')} fail; {len(fid.not_checked)} n/a; {e2e}")
    print(f"secondary: delta sign {agr.sign_matches}/{agr.compared} over all steps, "
          f"Spearman {fixed(agr.spearman, 3, signed=True, empty='n/a')}")
    if record.reproduction is not None:
        print(record.reproduction.summary())


def cmd_report(args: argparse.Namespace) -> int:
    if args.page_only:  # a written report folder, its run gone: everything again from its record
        from ..report import rebuild  # pandas, matplotlib

        ignored = [flag for flag, value in (("--out", args.out), ("--reference", args.reference)) if value]
        if ignored:  # the folder is rendered in place, from its record alone: these would be dropped unseen
            raise ConfigError(f"{ignored[0]}: not with --page-only, which renders RUN_DIR (a report folder) in "
                              "place from its report.json; run `report RUN_DIR` for a new report")

        paths = rebuild(Path(args.run_dir))
        print(f"wrote {len(paths)} files (tables, figures, index.html and blocks/) to {args.run_dir} "
              "from its record (report.json)")
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
                   help="RUN_DIR is a written report folder whose run may be gone: render its tables, figures, "
                        "index.html and blocks/ again from its report.json alone (a folder written before "
                        "report.json is migrated from its table.csv, table.md and seeds.csv)")
    p.set_defaults(func=cmd_report)
