"""argparse value types shared by the subcommands: one-line errors that say what is valid."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, else a one-line error saying so."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


def step_names(values: list[str] | None) -> list[str] | None:
    """``--steps a b`` and ``--steps a,b`` alike: names split on commas and spaces."""
    if values is None:
        return None
    return [name for value in values for name in value.replace(",", " ").split()]
