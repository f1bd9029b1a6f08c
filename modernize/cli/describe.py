"""``run_ablation.py describe``: the teaching view of a roadmap, step by step."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..roadmap import load_roadmap
from .argtypes import Extend, add_roadmap_argument, resolution, step_names


def cmd_describe(args: argparse.Namespace) -> int:
    from ..views.describe import describe  # torch: imported by the handler, not by --help

    roadmap = load_roadmap(args.roadmap)
    steps = step_names(args.step)
    if args.step is not None and not steps:
        raise ConfigError(f"--step: give step names (valid: {', '.join(roadmap.names)})")
    files = [n for n in steps or [] if n not in roadmap.names and n.endswith(".toml")]
    if files:
        raise ConfigError(f"--step {files[0]}: not a step of roadmap '{roadmap.name}'; the roadmap goes before "
                          f"--step (describe ROADMAP --step NAME ...)")
    if args.proxy is not None and not args.figure:
        raise ConfigError(f"--proxy {args.proxy}: draws the proxy's blocks, so it needs --figure PATH "
                          f"(the text and --figure4 are at the paper's scale)")
    if args.figure4:
        from ..views.diagram_draw import save_figure4

        print(f"wrote the first vs last block (Figure 4): {save_figure4(roadmap, Path(args.figure4))}")
        return 0
    if args.figure:
        from ..proxy import proxy_preset
        from ..views.diagram_draw import save_diagrams  # torch, matplotlib: by the handler

        scale = proxy_preset(args.proxy) if args.proxy is not None else None
        written = save_diagrams(roadmap, steps, Path(args.figure), scale)
        print(f"wrote {len(written)} block diagram(s): {written[0] if len(written) == 1 else args.figure}")
        return 0
    print(describe(roadmap, steps, resolution=args.resolution, counts=not args.no_counts), end="")
    return 0


def add_describe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("describe", help="teaching view: what each step changes, block drawings, per-stage cost")
    add_roadmap_argument(p)
    p.add_argument("--step", "--steps", nargs="+", action=Extend, default=None, metavar="NAME",
                   help="describe only these steps (--step a b, --step a,b or --step a --step b; default: every step)")
    p.add_argument("--resolution", type=resolution, default=224, help="input size for the counts (default 224)")
    p.add_argument("--no-counts", action="store_true", help="skip the per-stage params/MACs table (instant)")
    p.add_argument("--figure", metavar="PATH", default=None,
                   help="write block diagrams (before above after, paper scale, slide-ready) instead of the "
                        "text: PATH.svg or PATH.png for one --step, or a folder for one SVG per step")
    p.add_argument("--proxy", metavar="NAME", default=None,
                   help="with --figure: each step's block at the paper's scale above the same block under "
                        "this proxy preset (what a run with --proxy NAME trains), e.g. fidelity32")
    p.add_argument("--figure4", metavar="PATH", default=None,
                   help="write the roadmap's first block above its last (the paper's Figure 4), paper scale, "
                        "slide-ready: PATH.svg or PATH.png")
    p.set_defaults(func=cmd_describe)
