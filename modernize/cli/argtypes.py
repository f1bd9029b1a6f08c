"""argparse value types shared by the subcommands: one-line errors that say what is valid."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from ..recipe import MAX_RESOLUTION


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


class Extend(argparse.Action):
    """A list flag given more than once collects every value (``--seeds 0 1 --seeds 2``: 0 1 2), as
    ``describe --step`` does; argparse's default keeps only the last group without a word, and its
    ``"extend"`` action would add the values to the default's."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        if current is None or current is self.default:
            current = []
        setattr(namespace, self.dest, [*current, *values])  # type: ignore[misc]


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)

MAX_SEED = 2**31 - 1
"""Seeds are multiplied into per-epoch seeds (< 2**63 for torch.manual_seed)."""


def int_between(minimum: int, maximum: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum], else a one-line error saying so."""
    low = int_at_least(minimum)

    def parse(text: str) -> int:
        value = low(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{what or 'value'} must be at most {maximum}, got {value}")
        return value

    return parse


seed = int_between(0, MAX_SEED, "a seed")


def resolution(text: str) -> int:
    """An input size in pixels: an integer in [32, MAX_RESOLUTION]."""
    value = positive_int(text)
    if not 32 <= value <= MAX_RESOLUTION:
        raise argparse.ArgumentTypeError(f"resolution must be >= 32 px and at most {MAX_RESOLUTION} px, got {value}")
    return value


def number(text: str) -> float:
    """Any float."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_number(text: str) -> float:
    """A finite float > 0 (timeouts, rates)."""
    value = number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def step_names(values: list[str] | None) -> list[str] | None:
    """``--steps a b`` and ``--steps a,b`` alike: names split on commas and spaces."""
    if values is None:
        return None
    return [name for value in values for name in value.replace(",", " ").split()]


def add_roadmap_argument(p: argparse.ArgumentParser) -> None:
    """The optional positional ``roadmap`` every command that reads a roadmap takes."""
    p.add_argument("roadmap", nargs="?", default=None,
                   help="roadmap TOML file or built-in name (default: resnet50_to_convnext_t)")
