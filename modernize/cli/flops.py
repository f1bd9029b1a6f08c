"""``run_ablation.py flops``: the per-step MACs / FLOPs / params table beside the paper's."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from ..files import check_writable_dir
from ..paths import default_out
from ..proxy import PROXIES, proxy_preset
from ..roadmap import check_under_proxy, load_roadmap
from .argtypes import add_roadmap_argument, resolution


def print_flops(roadmap_name: str | None, out: Path | None, resolution: int = 224, proxy: str | None = None) -> None:
    """Count every step, print the table (and the paper's inconsistencies), write
    ``out/flops.csv`` and ``out/flops.md`` (default ``runs/<roadmap>/``). With ``proxy``:
    every step is checked under that proxy first and the proxy's models are counted (no paper
    columns; default folder ``runs/<roadmap>/proxy_<name>/``)."""
    from ..views.flops_table import flops_table, inconsistency_notes, write_flops_table  # torch, fvcore, pandas

    roadmap = load_roadmap(roadmap_name)
    if proxy is not None:
        steps = check_under_proxy(roadmap, proxy_preset(proxy))
        roadmap = dataclasses.replace(roadmap, steps=tuple(dataclasses.replace(s, paper={}) for s in steps))
        print(f"every step of {roadmap.path} is valid under proxy {proxy}; counts below are the proxy's models")
    out = out or default_out(roadmap.name) / (f"proxy_{proxy}" if proxy else "")
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
    print_flops(args.roadmap, Path(args.out) if args.out else None, args.resolution, args.proxy)
    return 0


def add_flops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flops", help="per-step MACs / FLOPs / params table beside the paper's")
    add_roadmap_argument(p)
    p.add_argument("--out", default=None, help="output folder (default: runs/<roadmap name>/)")
    p.add_argument("--resolution", type=resolution, default=224, help="input size in px (default 224)")
    p.add_argument("--proxy", choices=list(PROXIES), default=None, metavar="NAME",
                   help=f"check every step under a proxy scale ({', '.join(PROXIES)}) and count the proxy's "
                        "models (default folder: runs/<roadmap>/proxy_NAME/)")
    p.set_defaults(func=cmd_flops)
