"""``run_ablation.py flops``: the per-step MACs / FLOPs / params table beside the paper's."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..files import check_writable_dir
from ..paths import default_out
from ..roadmap import load_roadmap
from .argtypes import add_roadmap_argument, resolution


def print_flops(roadmap_name: str | None, out: Path | None, resolution: int = 224) -> None:
    """Count every step, print the table (and the paper's inconsistencies), write
    ``out/flops.csv`` and ``out/flops.md`` (default ``runs/<roadmap>/``)."""
    from ..flops_table import flops_table, inconsistency_notes, write_flops_table  # torch, fvcore, pandas

    roadmap = load_roadmap(roadmap_name)
    out = out or default_out(roadmap.name)
    check_writable_dir(out)  # a bad --out fails now, not after the counting
    start = time.perf_counter()
    table = flops_table(roadmap, resolution)
    shown = table.drop(columns=["note"])
    print(shown.to_string(index=False, na_rep=""))
    for note in inconsistency_notes(table):
        print(f"note: paper inconsistency, {note}")
    paths = write_flops_table(table, roadmap, out, resolution)
    print(f"wrote {', '.join(str(p) for p in paths)} ({time.perf_counter() - start:.1f} s)")


def cmd_flops(args: argparse.Namespace) -> int:
    print_flops(args.roadmap, Path(args.out) if args.out else None, args.resolution)
    return 0


def add_flops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flops", help="per-step MACs / FLOPs / params table beside the paper's")
    add_roadmap_argument(p)
    p.add_argument("--out", default=None, help="output folder (default: runs/<roadmap name>/)")
    p.add_argument("--resolution", type=resolution, default=224, help="input size in px (default 224)")
    p.set_defaults(func=cmd_flops)
