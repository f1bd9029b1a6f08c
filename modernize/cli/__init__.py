"""Command line: ``python run_ablation.py [COMMAND] ...`` (also installed as ``modernize``).

The one command-line layer: one module per command (``flops``, ``train``, ``bench``,
``report``, ``describe``, ``compare``, ``explore``, and ``main_job`` for no command), shared argument types in
:mod:`.argtypes`. Handlers call library functions; nothing outside this package imports it.

Every bad input ends in one line on stderr and exit code 2 (130 on Ctrl-C); nothing
half-written stays.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from .bench import add_bench
from .compare import add_compare
from .describe import add_describe
from .explore import add_explore
from .flops import add_flops
from .report import add_report
from .train import add_train


def _not_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a value, got an empty string")
    return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        """Every text value (a path, a name) must be non-empty: ``--out ""`` or ``--reference ""``
        would otherwise read as the flag not given, the default used without a word."""
        action = super().add_argument(*args, **kwargs)
        if action.nargs != 0 and action.type is None and action.choices is None:
            action.type = _not_empty
        return action


# Subcommands register here; each module adds its parser and handler.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_flops, add_bench, add_report, add_describe,
                                                                    add_train, add_compare, add_explore]


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
    from .main_job import run_main_job

    return run_main_job()


def _dispatch(argv: list[str]) -> int:
    if not argv:
        return main_job()
    args = build_parser().parse_args(argv)
    if not getattr(args, "func", None):
        build_parser().print_help()
        return 2
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """The error boundary (``boundary.py``): expected failures are one line on stderr and exit 2
    (130 for a stop); ``--debug`` or ``MODERNIZE_DEBUG=1`` adds the traceback."""
    from ..boundary import guarded_main

    return guarded_main(_dispatch, argv)


__all__ = ["SUBCOMMANDS", "build_parser", "main"]
