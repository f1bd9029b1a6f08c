"""The command line's error boundary: every expected failure is one line on stderr and exit
code 2 (130 for a stop request); only genuine bugs show a traceback. ``--debug`` (or
``MODERNIZE_DEBUG=1``) shows the traceback of every failure."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

from .errors import ModernizeError

DEBUG_ENV = "MODERNIZE_DEBUG"


def split_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug``, and whether it (or ``MODERNIZE_DEBUG``) asked for tracebacks."""
    args = list(argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if "--debug" in args:
        args.remove("--debug")
        debug = True
    return args, debug


def expected_message(exc: BaseException) -> str | None:
    """The one-line message of an expected failure, or None for a bug."""
    if isinstance(exc, ModernizeError):
        return f"error: {exc}"
    if isinstance(exc, OSError):  # a file where a folder should be, read-only, disk full, /proc
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"error: {where}{exc.strerror or type(exc).__name__}" + (f" ({exc})" if not exc.strerror else "")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return (f"error: out of memory ({type(exc).__name__}{': ' + first[:160] if first else ''}); "
                "use a smaller size, batch or --proxy")
    return None


def guarded(body: Callable[[], int], debug: bool) -> int:
    """Run ``body``; expected failures become one line and exit 2, a stop request exit 130."""
    try:
        return body()
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        msg = expected_message(exc)
        if msg is None:
            raise
        if debug:
            traceback.print_exc()
        print(" ".join(msg.split("\n"))[:2000], file=sys.stderr)
        return 2
