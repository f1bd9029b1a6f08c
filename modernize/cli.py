"""Command line: ``python run_ablation.py [COMMAND] ...`` (also installed as ``modernize``).

Every bad input ends in one line on stderr and exit code 2; nothing half-written stays.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .bench_cli import add_bench
from .argtypes import int_at_least
from .errors import ModernizeError
from .describe import add_describe
from .report import add_report
from .train_cli import add_train

REPO_ROOT = Path(__file__).resolve().parent.parent
REPORTS_DIR = REPO_ROOT / "reports"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


_positive_int = int_at_least(1)


def _resolution(text: str) -> int:
    value = _positive_int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"resolution must be >= 32 px, got {value}")
    return value


def default_out(roadmap_name: str) -> Path:
    """Where a roadmap's generated tables go by default: ``reports/<roadmap>/``."""
    return REPORTS_DIR / roadmap_name


# --- flops -----------------------------------------------------------------------------------

def cmd_flops(args: argparse.Namespace) -> int:
    from .flops_table import flops_table, inconsistency_notes, write_flops_table
    from .roadmap import load_roadmap

    roadmap = load_roadmap(args.roadmap)
    start = time.perf_counter()
    table = flops_table(roadmap, args.resolution)
    shown = table.drop(columns=["note"])
    print(shown.to_string(index=False, na_rep=""))
    for note in inconsistency_notes(table):
        print(f"note: paper inconsistency, {note}")
    out = Path(args.out) if args.out else default_out(roadmap.name)
    paths = write_flops_table(table, roadmap, out, args.resolution)
    print(f"wrote {', '.join(str(p) for p in paths)} ({time.perf_counter() - start:.1f} s)")
    return 0


def add_flops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flops", help="per-step MACs / FLOPs / params table beside the paper's")
    p.add_argument("roadmap", nargs="?", default=None,
                   help="roadmap TOML file or built-in name (default: resnet50_to_convnext_t)")
    p.add_argument("--out", default=None, help="output folder (default: reports/<roadmap name>/)")
    p.add_argument("--resolution", type=_resolution, default=224, help="input size in px (default 224)")
    p.set_defaults(func=cmd_flops)


# Subcommands register here; each module adds its parser and handler.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_flops, add_bench, add_report, add_describe, add_train]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_ablation.py", description=(
        "Reproduce the ResNet -> ConvNeXt roadmap one change at a time. With no command: "
        "the main job (see README)."))
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main_job() -> int:
    """The offline default (see README): train all steps of the default roadmap with the
    ``quick`` recipe at proxy scale on Fashion-MNIST into ``runs/main``, then the report."""
    from .train_cli import run_main_job

    return run_main_job(REPO_ROOT / "runs" / "main", REPORTS_DIR)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv:
            return main_job()
        args = build_parser().parse_args(argv)
        if not getattr(args, "func", None):
            build_parser().print_help()
            return 2
        return int(args.func(args) or 0)
    except ModernizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
