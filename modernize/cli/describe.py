"""``run_ablation.py describe``: the teaching view of a roadmap, step by step."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..roadmap import Roadmap, load_roadmap
from .argtypes import add_roadmap_argument, resolution


def write_figures(roadmap: Roadmap, steps: list[str] | None, target: Path) -> list[Path]:
    """``--figure``: a file ending in .svg/.png for one step, else a folder of ``<step>.svg``."""
    from ..diagram_draw import FORMATS, save_step_diagram  # torch, matplotlib: imported by the handler

    names = steps or roadmap.names
    unknown = [n for n in names if n not in roadmap.names]
    if unknown:  # the text's own check, before any file is written
        raise ConfigError(f"--step: unknown step(s) {', '.join(unknown)} in roadmap '{roadmap.name}' "
                          f"(valid: {', '.join(roadmap.names)})")
    if target.suffix.lower().lstrip(".") in FORMATS:
        if len(names) != 1:
            raise ConfigError(f"--figure {target}: one file holds one step's diagram; give one --step NAME, "
                              f"or a folder to get one SVG per step")
        return [save_step_diagram(roadmap, names[0], target)]
    if target.suffix:
        raise ConfigError(f"--figure {target}: give a file ending in .svg or .png, or a folder")
    return [save_step_diagram(roadmap, n, target / f"{n}.svg") for n in names]


def cmd_describe(args: argparse.Namespace) -> int:
    from ..describe import describe  # torch: imported by the handler, not by --help

    roadmap = load_roadmap(args.roadmap)
    if args.figure4:
        from ..diagram_draw import save_figure4

        print(f"wrote the first vs last block (Figure 4): {save_figure4(roadmap, Path(args.figure4))}")
        return 0
    if args.figure:
        written = write_figures(roadmap, args.step, Path(args.figure))
        print(f"wrote {len(written)} block diagram(s): {written[0] if len(written) == 1 else args.figure}")
        return 0
    print(describe(roadmap, args.step, resolution=args.resolution, counts=not args.no_counts), end="")
    return 0


def add_describe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("describe", help="teaching view: what each step changes, block drawings, per-stage cost")
    add_roadmap_argument(p)
    p.add_argument("--step", action="append", default=None, metavar="NAME",
                   help="describe only this step (repeatable; default: every step)")
    p.add_argument("--resolution", type=resolution, default=224, help="input size for the counts (default 224)")
    p.add_argument("--no-counts", action="store_true", help="skip the per-stage params/MACs table (instant)")
    p.add_argument("--figure", metavar="PATH", default=None,
                   help="write block diagrams (before/after, paper scale) instead of the text: PATH.svg or "
                        "PATH.png for one --step, or a folder for one SVG per step")
    p.add_argument("--figure4", metavar="PATH", default=None,
                   help="write the roadmap's first block beside its last (the paper's Figure 4), paper scale: "
                        "PATH.svg or PATH.png")
    p.set_defaults(func=cmd_describe)
