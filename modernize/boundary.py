"""The command line's error boundary: every expected failure is one line on stderr and exit code 2
(130 for a stop request: Ctrl-C or SIGTERM); only genuine bugs show a traceback. ``--debug`` (or
``MODERNIZE_DEBUG=1``) shows the traceback of every failure."""

from __future__ import annotations

import contextlib
import errno
import inspect
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import ModernizeError

DEBUG_ENV = "MODERNIZE_DEBUG"
_OOM_TEXT = ("can't allocate memory", "not enough memory", "Storage size calculation overflowed")
"""torch's CPU allocator reports a failed allocation as a RuntimeError with one of these."""


def split_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug``, and whether it (or ``MODERNIZE_DEBUG``) asked for tracebacks."""
    args = list(argv)
    debug = debug_asked()
    if "--debug" in args:
        args.remove("--debug")
        debug = True
    return args, debug


def _oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc) for t in _OOM_TEXT)


def expected_message(exc: BaseException) -> str | None:
    """The one-line message of an expected failure, or None for a bug."""
    if isinstance(exc, ModernizeError):
        return f"error: {exc}"
    if isinstance(exc, OSError):  # a file where a folder should be, read-only, disk full, /proc
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        if getattr(exc, "filename2", None):  # a rename: name the target too
            where = f"{exc.filename} -> {exc.filename2}: "
        return f"error: {where}{exc.strerror or type(exc).__name__}" + (f" ({exc})" if not exc.strerror else "")
    if _oom(exc):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return (f"error: out of memory ({type(exc).__name__}{': ' + first[:160] if first else ''}); "
                "use a smaller size, batch or --proxy")
    return user_kind_message(exc)


def debug_asked() -> bool:
    """Whether tracebacks were asked for (``--debug`` sets ``MODERNIZE_DEBUG`` for child processes)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _user_code() -> dict[str, list[tuple[str, Any]]]:
    """Source file -> (what, its function or class) of the user kinds and transforms registered
    from it in this process (not the built-in ones)."""
    found: list[tuple[str, Any]] = []
    kinds = sys.modules.get("modernize.kinds")
    for registry in getattr(kinds, "REGISTRIES", {}).values():
        found += [(f"{k.family} kind '{k.name}'", k.factory) for k in registry.values()
                  if not k.factory.__module__.startswith("modernize.")]
    transforms = sys.modules.get("modernize.transforms")
    found += [(f"transform '{t.name}'", t.fn) for t in getattr(transforms, "TRANSFORMS", {}).values()
              if not t.fn.__module__.startswith("modernize.")]
    files: dict[str, list[tuple[str, Any]]] = {}
    for who, code in found:
        with contextlib.suppress(TypeError, OSError):
            path = inspect.getsourcefile(code)
            if path:
                files.setdefault(os.path.abspath(path), []).append((who, code))
    return files


def _which(entries: list[tuple[str, Any]], frames: list[Any]) -> str:
    """What the last of ``frames`` (in a user file) runs: the kind of the nearest module being
    called (tagged by ``Kind.build``), else the registered function or class it is."""
    kinds = sys.modules.get("modernize.kinds")
    for frame in reversed(frames):
        kind = kinds.kind_of(frame.f_locals.get("self")) if kinds is not None else None
        if kind is not None:
            return f"{kind.family} kind '{kind.name}'"
    frame = frames[-1]
    this = frame.f_locals.get("self")
    for who, code in entries:
        if (inspect.isclass(code) and isinstance(this, code)) or getattr(code, "__code__", None) is frame.f_code:
            return who
    if len(entries) == 1:
        return entries[0][0]
    return "code of " + " or ".join(who for who, _ in entries)


def user_kind_message(exc: BaseException) -> str | None:
    """One line for an exception raised in (or below) the code of a user kind or transform: which
    one, its file and line, and the exception; None when no user code is on its traceback."""
    files = _user_code()
    if not files:
        return None
    seen: set[int] = set()
    chain: BaseException | None = exc
    while chain is not None and id(chain) not in seen:  # the exception, then what caused it
        seen.add(id(chain))
        frames = list(traceback.walk_tb(chain.__traceback__))
        hits = [i for i, (frame, _) in enumerate(frames) if os.path.abspath(frame.f_code.co_filename) in files]
        if hits:  # the deepest frame of a user file
            frame, line = frames[hits[-1]]
            path = os.path.abspath(frame.f_code.co_filename)
            who = _which(files[path], [f for f, _ in frames[: hits[-1] + 1]])
            text = " ".join(str(exc).split())[:300]
            return (f"error: {who} ({path}:{line}, in {frame.f_code.co_name}) raised "
                    f"{type(exc).__name__}{': ' + text if text else ''} ({DEBUG_ENV}=1 or --debug shows the "
                    "traceback)")
        chain = chain.__cause__ or chain.__context__
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a closed pipe or a full disk must not
    fail again (with a traceback-like 'Exception ignored') when the interpreter exits."""
    with contextlib.suppress(Exception):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _stdout_ok() -> bool:
    try:
        sys.stdout.flush()
        return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (exit 130, files left whole) instead of killing the process
    between two writes; the training loop installs its own handler on top of this one."""
    old = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def guarded(body: Callable[[], int], debug: bool) -> int:
    """Run ``body``; expected failures become one line and exit 2, a stop request exit 130."""
    with contextlib.suppress(AttributeError, ValueError):  # a path of undecodable bytes prints as given
        sys.stdout.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]
    try:
        with _sigterm_stops():
            rc = body()
            sys.stdout.flush()  # a closed pipe or a full disk on stdout is reported here, not at exit
            return rc
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
        if not _stdout_ok():
            _silence_stdout()
            if isinstance(exc, OSError) and not exc.filename and exc.errno in (errno.EPIPE, errno.ENOSPC, errno.EIO):
                msg = f"error: <stdout>: {exc.strerror} (the output was closed or is full)"
        print(" ".join(msg.split("\n"))[:2000], file=sys.stderr)
        return 2


def guarded_main(body: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """``body(args)`` behind :func:`guarded`: ``argv`` (default ``sys.argv[1:]``) without
    ``--debug``. The entry of ``modernize`` and of the reference scripts in scripts/, so that a
    script's refused input reads like the command line's."""
    args, debug = split_debug(sys.argv[1:] if argv is None else argv)
    before = os.environ.get(DEBUG_ENV)
    if debug:  # local workers and other child processes show their tracebacks too
        os.environ[DEBUG_ENV] = "1"
    try:
        return guarded(lambda: body(args), debug)
    finally:
        if before is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = before

