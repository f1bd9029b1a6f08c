"""``run_ablation.py compare RUN_A RUN_B [...] --out DIR``: runs side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError


def cmd_compare(args: argparse.Namespace) -> int:
    from ..fmt import significant
    from ..report.compare import compare_runs, display_table, rerender, write_comparison  # pandas, scipy, matplotlib

    if args.rerender:  # a written comparison: every file again from its compare.json
        if args.run_dirs or args.out:  # the folder is rendered in place: these would be dropped unseen
            raise ConfigError(f"--rerender {args.rerender}: renders that folder in place from its compare.json; "
                              f"give no {'RUN_DIR' if args.run_dirs else '--out'} with it")
        print(f"wrote {', '.join(str(p) for p in rerender(Path(args.rerender)))}")
        return 0
    run_dirs = [Path(d) for d in args.run_dirs]
    cmp = compare_runs(run_dirs)  # fewer than two folders: refused here, before any write
    out = Path(args.out) if args.out else run_dirs[0] / "compare"
    paths = write_comparison(cmp, out)  # files first: a closed stdout pipe must not cost them
    for info in cmp.runs:
        print(f"{info.label}: {info.run_dir} (recipe {info.recipe}, lr {significant(info.lr)}, "
              f"proxy {info.proxy_words}, data {info.data}, code {info.code}, machine {info.machine})"
              + (f"; differs from the baseline in: {info.differs}" if info.differs else "; baseline"))
    print(display_table(cmp, pm="+-").to_string(index=False))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="runs side by side: per step mean, seed spread and difference from the first",
                       description="Put run folders of one roadmap (or of roadmaps sharing step names) side by "
                                   "side: each run's mean top-1 and seed spread per step, and every run's "
                                   "difference from the first (the baseline) with a 95 % Welch interval. Writes "
                                   "compare.json (the record), compare.csv, compare.md, compare.tex and compare.png.")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                   help="folders written by `train`; the first is the baseline")
    p.add_argument("--rerender", default=None, metavar="DIR",
                   help="a folder written by `compare`: render its files again from its compare.json alone "
                        "(a folder written before compare.json is migrated from compare.csv and compare.md)")
    p.add_argument("--out", default=None, help="output folder (default: FIRST_RUN_DIR/compare/)")
    p.set_defaults(func=cmd_compare)
