"""``run_ablation.py describe``: the teaching view of a roadmap, step by step."""

from __future__ import annotations

import argparse

from ..roadmap import load_roadmap
from .argtypes import add_roadmap_argument, resolution


def cmd_describe(args: argparse.Namespace) -> int:
    from ..describe import describe  # torch: imported by the handler, not by --help

    roadmap = load_roadmap(args.roadmap)
    print(describe(roadmap, args.step, resolution=args.resolution, counts=not args.no_counts), end="")
    return 0


def add_describe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("describe", help="teaching view: what each step changes, block drawings, per-stage cost")
    add_roadmap_argument(p)
    p.add_argument("--step", action="append", default=None, metavar="NAME",
                   help="describe only this step (repeatable; default: every step)")
    p.add_argument("--resolution", type=resolution, default=224, help="input size for the counts (default 224)")
    p.add_argument("--no-counts", action="store_true", help="skip the per-stage params/MACs table (instant)")
    p.set_defaults(func=cmd_describe)
