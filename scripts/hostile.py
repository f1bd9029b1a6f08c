#!/usr/bin/env python3
"""Hostile battery (issue 11): bad flags, edited and corrupt files, OS errors, hostile image
folders, signals, concurrent runs and ``--force``, across every command of the CLI: the cases.
pytest runs them (``tests/test_battery.py``, one test per case; selection, sharding and
reporting are pytest's and pytest-xdist's)::

    python -m pytest tests/test_battery.py -m "not slow"   # the cases that train nothing
    python -m pytest tests/test_battery.py -k signal        # only cases whose id contains a word
    python -m pytest tests/test_battery.py                  # every case (-n auto: one server per worker)
    HOSTILE_FRESH=1 python -m pytest tests/test_battery.py  # every CLI call a fresh `python -m modernize.cli`

Each case runs the command line in a child process (60 s timeout each: a hang is one of the
faults it reports) inside a fresh temp root of its own, and checks: the exit code (2 for bad
input, 130 for a stop, 0 when it should succeed), that stderr's last line is one ``error:`` line
naming the culprit, no ``Traceback`` anywhere, no hang, no file created or changed outside the
paths the command may write (the temp root's other files, a sentinel beside it, the repository),
and where a command is refused or stopped that the run folder is unchanged (or resumable) and
the corrected command on the same folder then succeeds with the right numbers.

Child processes: by default each CLI call is ``os.fork()`` of this process, which imported
torch and modernize once (a fresh interpreter costs 10-20 s of imports on a loaded 2-core
machine; forked, a case costs about a second); this process is ``python scripts/hostile.py
--serve BASE``, started by the test suite, which never runs a torch op itself. The child sets up its own session, working
folder, HOME/TMPDIR (inside the case's root), UTF-8 stdio, a memory limit, and calls
``modernize.cli.main(argv)`` exactly as ``python -m modernize.cli`` does; an uncaught exception
prints its traceback and exits 1, like the interpreter. ``HOSTILE_FRESH=1`` (and the cases
marked fresh) run a new interpreter instead. Signals at a given point (start, data loading, a training
iteration, evaluation) are sent by the child to itself from a hook wrapped around the function
that marks that point, so they land at the same place on every run.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import io
import json
import math
import os
import pkgutil
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TIMEOUT_S = 60.0
FRESH_STARTUP_S = 240.0
"""A fresh interpreter first imports torch and modernize (15 s on an idle 2-core machine, minutes
under load at nice 15): that time is not the command's, so it is not counted towards a hang."""
STEP = "separate_downsampling"
ERROR_LINE = re.compile(r"(\S+( \S+)?: )?error: ")  # ours ("error: ..."), or argparse's ("prog cmd: error: ...")
NONFINITE = re.compile(r"(?<![A-Za-z_])[+-]?(nan|inf|infinity)(?![A-Za-z_])", re.IGNORECASE)


def _env_defaults() -> None:
    for k, v in {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0",
                 "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}.items():
        os.environ.setdefault(k, v)


# --- child processes --------------------------------------------------------------------------------

def _all_modernize_modules() -> None:
    import modernize

    for info in pkgutil.walk_packages(modernize.__path__, "modernize."):
        if info.name.endswith("__main__"):
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(info.name)


def preload() -> None:
    """Import what the children use, once, before forking (no torch op runs here: fork-safe)."""
    _env_defaults()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    import modernize.cli  # noqa: F401

    _all_modernize_modules()
    import gc

    import tests.test_reliability  # noqa: F401

    gc.collect()
    gc.freeze()  # the children's garbage collector leaves these objects (and their pages) alone
    _BASE_THREADS[:] = [_threads()]


def _resolve(target: str) -> list[tuple[Any, str, Any]]:
    """``module:attr``, ``module:Class.method`` or ``*:name`` (every modernize module that holds the
    function defined under that name) -> [(owner, attribute, original)]."""
    mod, _, attr = target.partition(":")
    if mod == "*":
        mods = [m for n, m in list(sys.modules.items()) if n.startswith("modernize") and m is not None]
        originals = [getattr(m, attr) for m in mods if callable(getattr(m, attr, None))
                     and getattr(getattr(m, attr), "__module__", None) == m.__name__]
        if not originals:
            raise LookupError(f"hook point {target}: no modernize module defines '{attr}'")
        fn = originals[0]
        return [(m, attr, fn) for m in mods if getattr(m, attr, None) is fn]
    module = importlib.import_module(mod)
    if "." in attr:
        cls_name, meth = attr.split(".", 1)
        cls = getattr(module, cls_name)
        return [(cls, meth, cls.__dict__[meth])]
    return [(module, attr, getattr(module, attr))]


def install_hook(hook: Sequence[Any]) -> None:
    """``("signal", target, signame, nth)``: on the nth call of target, send the signal to this
    process, then run it. ``("forbid", target, why)``: calling target ends the process (exit 98)
    with a line saying so. ``("after", target, signame, nth)``: the signal after the nth call returns.
    ``("cwd-gone", "")``: the working folder is deleted before the command starts.
    ``("raise", target)`` / ``("sleep", target, seconds)``: a bug / a hang there (self-test)."""
    kind, target = hook[0], hook[1]
    if kind == "cwd-gone":  # the working folder is deleted under the process
        here = Path(tempfile.mkdtemp(prefix="cwd-", dir=os.environ.get("TMPDIR")))
        os.chdir(here)
        here.rmdir()
        return
    places = _resolve(target)
    calls = [0]
    original = places[0][2]

    if kind in ("signal", "after"):
        sig, nth = getattr(signal, hook[2]), int(hook[3])

        def wrapper(*a: Any, **kw: Any) -> Any:
            calls[0] += 1
            if kind == "signal" and calls[0] == nth:
                os.kill(os.getpid(), sig)
            out = original(*a, **kw)
            if kind == "after" and calls[0] == nth:
                os.kill(os.getpid(), sig)
            return out
    elif kind in ("raise", "sleep"):  # the battery's self-test: a bug, a hang
        def wrapper(*a: Any, **kw: Any) -> Any:
            if kind == "sleep":
                time.sleep(float(hook[2]))
            raise RuntimeError(f"hostile self-test: a bug in {target}")
    elif kind == "forbid":
        why = hook[2]

        def wrapper(*a: Any, **kw: Any) -> Any:
            sys.stderr.write(f"HOSTILE-FORBIDDEN: {target} called: {why}\n")
            sys.stderr.flush()
            os._exit(98)
    else:
        raise ValueError(f"unknown hook {hook!r}")
    for owner, attr, _ in places:
        setattr(owner, attr, wrapper)


def _stdio() -> None:
    """UTF-8 stdio as a fresh interpreter under a UTF-8 locale has, on the redirected fds."""
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8",
                                  errors="strict")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  line_buffering=True, write_through=True)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")


def child_main(argv: list[str], hooks: Sequence[Sequence[Any]]) -> int:
    """What ``python -m modernize.cli ARGV`` does, with the hooks installed first; returns the exit code."""
    rc: int
    try:
        for h in hooks:
            install_hook(h)
        from modernize.cli import main

        sys.argv = ["run_ablation.py", *argv]
        try:
            rc = main(argv)
        except SystemExit as exc:
            code = exc.code
            if code is None:
                rc = 0
            elif isinstance(code, int):
                rc = code
            else:
                print(code, file=sys.stderr)
                rc = 1
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        rc = 1
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BaseException as exc:  # the interpreter: "Exception ignored ..." and exit 120
        with contextlib.suppress(BaseException):
            sys.stderr.write(f"Exception ignored in: <stdout>\n{type(exc).__name__}: {exc}\n")
        rc = 120
    with contextlib.suppress(BaseException):
        sys.stderr.flush()
    return rc


def _child_env(root: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    home = root / ".home"
    env.update(HOME=str(home), TMPDIR=str(root / ".tmp"), MPLCONFIGDIR=str(home / "mpl"),
               PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(REPO))
    env.pop("MODERNIZE_DEBUG", None)
    env.update(extra or {})
    return env


_MEM_LIMIT: list[int] = []


def _limit_memory(extra_gib: float = 4.0) -> None:
    """Address-space limit: a hostile size fails with MemoryError instead of eating the machine."""
    if not _MEM_LIMIT:
        try:
            vm = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
        except (OSError, IndexError, ValueError):
            vm = 4 << 30
        _MEM_LIMIT.append(vm + int(extra_gib * (1 << 30)))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (_MEM_LIMIT[0], _MEM_LIMIT[0]))


@dataclass
class Proc:
    pid: int
    argv: list[str]
    out: Path
    err: Path
    start: float
    popen: subprocess.Popen[bytes] | None = None


_BASE_THREADS: list[int] = []
"""Threads of this process after its imports (torch starts its own, idle ones)."""


def _threads() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/task"))


def _spawn_fork(argv: list[str], root: Path, hooks: Sequence[Sequence[Any]], out: Path, err: Path,
                env: dict[str, str] | None, stdout: str) -> int:
    threads = _threads()
    if not _BASE_THREADS:
        _BASE_THREADS.append(threads)
    if threads > _BASE_THREADS[0]:  # a fork of a process with threads may hang on a lock one of them held
        raise RuntimeError(f"the battery process started a thread ({threads} now, {_BASE_THREADS[0]} after its "
                           "imports): a case ran torch here; use in_child")
    child_env = _child_env(root, env)
    for d in (root / ".home", root / ".tmp"):
        d.mkdir(parents=True, exist_ok=True)
    rfd = wfd = -1
    if stdout == "closed-pipe":
        rfd, wfd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    _limit_memory_value = _MEM_LIMIT[0] if _MEM_LIMIT else None
    pid = os.fork()
    if pid == 0:  # the child
        rc = 1
        try:
            os.setsid()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            if stdout == "closed-pipe":
                os.close(rfd)
                os.dup2(wfd, 1)
            elif stdout == "devfull":
                os.dup2(os.open("/dev/full", os.O_WRONLY), 1)
            else:
                os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
            _stdio()
            os.chdir(root)
            os.environ.clear()
            os.environ.update(child_env)
            tempfile.tempdir = None
            sys.dont_write_bytecode = True
            if _limit_memory_value:
                _limit_memory()
            rc = child_main(argv, hooks)
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        os._exit(rc & 0xFF if rc >= 0 else 1)
    if stdout == "closed-pipe":
        os.close(rfd)
        os.close(wfd)
    return pid


def _spawn_fresh(argv: list[str], root: Path, hooks: Sequence[Sequence[Any]], out: Path, err: Path,
                 env: dict[str, str] | None, stdout: str, module: str = "modernize.cli") -> subprocess.Popen[bytes]:
    for d in (root / ".home", root / ".tmp"):
        d.mkdir(parents=True, exist_ok=True)
    if hooks:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps({"argv": argv, "hooks": hooks})]
    else:
        cmd = [sys.executable, "-m", module, *argv]
    fo = open(out, "wb") if stdout == "file" else (open("/dev/full", "wb") if stdout == "devfull" else subprocess.PIPE)
    with open(err, "wb") as fe:
        p = subprocess.Popen(cmd, cwd=root, env=_child_env(root, env), stdin=subprocess.DEVNULL, stdout=fo,
                             stderr=fe, start_new_session=True)  # memory: the limit of this process
    if stdout == "closed-pipe" and p.stdout is not None:
        p.stdout.close()
    elif hasattr(fo, "close"):
        fo.close()  # type: ignore[union-attr]
    return p


@dataclass
class Res:
    argv: list[str]
    rc: int | None
    out: str
    err: str
    wall: float
    timed_out: bool

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.err.strip().splitlines() if ln.strip()]

    @property
    def last(self) -> str:
        return self.lines[-1] if self.lines else ""

    def brief(self) -> str:
        return f"rc={self.rc} last stderr line: {self.last[:300]!r}"


class CaseFailure(Exception):
    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind


# --- file-tree snapshots -------------------------------------------------------------------------------

def snapshot(root: Path, skip: Callable[[Path], bool] = lambda p: False, content: bool = False) -> dict[str, Any]:
    """path -> (kind, size, mtime_ns[, sha1]) of every entry under root (symlinks not followed)."""
    snap: dict[str, Any] = {}
    if not os.path.lexists(root):
        return snap
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            p = Path(e.path)
            if skip(p):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                snap[str(p)] = ("d",)
                stack.append(p)
            elif stat.S_ISREG(st.st_mode):
                entry: tuple[Any, ...] = ("f", st.st_size, st.st_mtime_ns)
                if content:
                    try:
                        entry = ("f", hashlib.sha1(p.read_bytes()).hexdigest())
                    except OSError:
                        entry = ("f", "unreadable")
                snap[str(p)] = entry
            else:
                snap[str(p)] = ("o", stat.S_IFMT(st.st_mode))
    return snap


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _repo_skip(p: Path) -> bool:
    return p.name in (".git", "__pycache__", ".pytest_cache", ".ruff_cache") or p.name.endswith(".egg-info")


# --- the case context ------------------------------------------------------------------------------------

@dataclass
class Tally:
    tracebacks: int = 0
    hangs: int = 0
    outside: int = 0
    invocations: int = 0
    cpu: float = 0.0
    """CPU seconds of the forked commands (user + system)."""


@dataclass
class Ctx:
    """One case: its temp root (cwd of every command it runs), RUN_DIR = root/run."""

    id: str
    case_dir: Path
    shard: Shard
    fresh: bool = False
    tally: Tally = field(default_factory=Tally)
    log: list[str] = field(default_factory=list)
    n: int = 0

    @property
    def root(self) -> Path:
        return self.case_dir / "root"

    @property
    def run(self) -> Path:
        return self.root / "run"

    # files
    def w(self, rel: str | Path, content: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def fail(self, kind: str, msg: str) -> None:
        raise CaseFailure(kind, msg)

    # invocations
    def spawn(self, argv: Sequence[str], *, hooks: Sequence[Sequence[Any]] = (), env: dict[str, str] | None = None,
              stdout: str = "file", fresh: bool | None = None, module: str = "modernize.cli") -> Proc:
        self.n += 1
        argv = [str(a) for a in argv]
        out, err = self.case_dir / f"out{self.n}.txt", self.case_dir / f"err{self.n}.txt"
        if fresh if fresh is not None else self.fresh:
            p = _spawn_fresh(argv, self.root, hooks, out, err, env, stdout, module)
            return Proc(p.pid, argv, out, err, time.monotonic(), popen=p)
        return Proc(_spawn_fork(argv, self.root, hooks, out, err, env, stdout), argv, out, err, time.monotonic())

    def wait(self, p: Proc, timeout: float = TIMEOUT_S) -> Res:
        rc: int | None = None
        timed_out = False
        while True:
            if p.popen is not None:
                code = p.popen.poll()
                if code is not None:
                    rc = code
                    break
            else:
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    rc = os.waitstatus_to_exitcode(status)
                    self.tally.cpu += usage.ru_utime + usage.ru_stime
                    break
            if time.monotonic() - p.start > timeout + (FRESH_STARTUP_S if p.popen is not None else 0.0):
                timed_out = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                if p.popen is not None:
                    p.popen.wait()
                else:
                    os.waitpid(p.pid, 0)
                break
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # DataLoader workers left behind
            os.killpg(p.pid, signal.SIGKILL)
        res = Res(p.argv, rc, _read(p.out), _read(p.err), time.monotonic() - p.start, timed_out)
        self.tally.invocations += 1
        self.log.append(f"$ modernize {' '.join(p.argv)[:400]}\n  -> rc={rc} ({res.wall:.1f} s)"
                        f"{' TIMED OUT' if timed_out else ''}\n  stderr tail: {res.err[-600:]!r}")
        if "Traceback" in res.err or "Traceback" in res.out:
            self.tally.tracebacks += 1
        if timed_out:
            self.tally.hangs += 1
        return res

    def cli(self, argv: Sequence[str], *, hooks: Sequence[Sequence[Any]] = (), env: dict[str, str] | None = None,
            stdout: str = "file", allowed: Sequence[Path] | None = None, timeout: float = TIMEOUT_S,
            fresh: bool | None = None, module: str = "modernize.cli") -> Res:
        """Run one command; files it may write: ``allowed`` (default: from argv)."""
        argv = [str(a) for a in argv]
        allow = list(allowed) if allowed is not None else allowed_paths(argv, self.root)
        before = snapshot(self.root, skip=_scratch_skip(self.root))
        res = self.wait(self.spawn(argv, hooks=hooks, env=env, stdout=stdout, fresh=fresh, module=module),
                        timeout)
        self._check_writes(before, allow, argv)
        self._check_basics(res)
        return res

    def _check_writes(self, before: dict[str, Any], allow: Sequence[Path], argv: Sequence[str]) -> None:
        after = snapshot(self.root, skip=_scratch_skip(self.root))
        bad = [p for p in changed(before, after) if not any(_under(Path(p), a) for a in allow)]
        if bad:
            self.tally.outside += 1
            self.fail("outside", f"`{' '.join(argv)[:120]}` wrote outside {', '.join(map(str, allow)) or 'nothing'}: "
                                 f"{', '.join(bad[:3])}")

    def _check_basics(self, res: Res) -> None:
        if res.timed_out:
            self.fail("hang", f"`{' '.join(res.argv)[:150]}` still running after {TIMEOUT_S:.0f} s")
        if "Traceback" in res.err or "Traceback" in res.out:
            tail = [ln for ln in res.err.splitlines() if ln.strip()][-1:] or ["?"]
            self.fail("traceback", f"`{' '.join(res.argv)[:150]}`: traceback ({tail[0][:200]})")
        if "HOSTILE-FORBIDDEN" in res.err:
            self.fail("fail", next(ln for ln in res.err.splitlines() if "HOSTILE-FORBIDDEN" in ln))

    # expectations
    def refused(self, argv: Sequence[str], culprit: str | Sequence[str], *, rc: int = 2,
                hooks: Sequence[Sequence[Any]] = (), keep: Iterable[Path] | None = None,
                **kw: Any) -> Res:
        """Exit ``rc``, stderr's last line the one error line and naming the culprit (any of them),
        and the run folder (or ``keep``) byte-identical afterwards."""
        guard = list(keep) if keep is not None else [self.run]
        skip = _scratch_skip(self.root)
        before = {str(g): snapshot(g, skip=skip, content=True) for g in guard}
        res = self.cli(argv, hooks=hooks, **kw)
        one_line_error(self, res, culprit, rc)
        for g in guard:
            diff = changed(before[str(g)], snapshot(g, skip=skip, content=True))
            if diff:
                self.fail("wrong", f"refused, yet {g} changed: {', '.join(diff[:3])}")
        return res

    def ok(self, argv: Sequence[str], *, hooks: Sequence[Sequence[Any]] = (), warn: str | None = None,
           **kw: Any) -> Res:
        res = self.cli(argv, hooks=hooks, **kw)
        if res.rc != 0:
            self.fail("fail", f"`{' '.join(res.argv)[:150]}` expected exit 0, got {res.brief()}")
        if warn is not None and warn.lower() not in res.err.lower():
            self.fail("fail", f"expected a warning naming {warn!r}, stderr: {res.err[-300:]!r}")
        if res.argv and res.argv[0] in ("train", "report"):
            bad = [ln for ln in report_lines(res.out.replace(str(self.case_dir), "<case>")) if NONFINITE.search(ln)]
            if bad:
                self.fail("wrong", f"non-finite number printed: {bad[0].strip()[:200]!r}")
        return res

    def stopped(self, argv: Sequence[str], *, hooks: Sequence[Sequence[Any]] = (), rc: int = 130, **kw: Any) -> Res:
        res = self.cli(argv, hooks=hooks, **kw)
        if res.rc != rc:
            self.fail("fail", f"expected exit {rc} (a stop), got {res.brief()}")
        if rc == 130 and not res.last.lower().startswith("interrupted"):
            self.fail("fail", f"a stop should end with an 'interrupted' line, got {res.last[:200]!r}")
        return res

    # run folders
    def trained(self, dst: Path | None = None) -> float:
        """A copy of the shard's trained tiny run (one job) at ``dst`` (default RUN_DIR); its top-1."""
        src, top1 = self.shard.template()
        shutil.copytree(src, dst or self.run, symlinks=True)
        return top1

    def result(self, run: Path | None = None, step: str = STEP, seed: int = 0) -> dict[str, Any]:
        path = (run or self.run) / step / f"seed{seed}" / "result.json"
        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            self.fail("wrong", f"{path}: unreadable after the run ({exc})")
        return obj

    def done(self, top1: float | None = None, *, run: Path | None = None, step: str = STEP, seed: int = 0,
             report: bool = True) -> dict[str, Any]:
        """The job is done with a finite top-1 (equal to ``top1`` when given: same config, same numbers),
        and the report's table agrees with result.json."""
        r = self.result(run, step, seed)
        got = r.get("top1")
        if r.get("status") != "done" or not isinstance(got, (int, float)) or not math.isfinite(got):
            self.fail("wrong", f"{step}/seed{seed}: status {r.get('status')!r}, top1 {got!r} after the run")
        if top1 is not None and abs(got - top1) > 1e-9:
            self.fail("wrong", f"{step}/seed{seed}: top1 {got} differs from the uninterrupted run's {top1}")
        if report:
            table = (run or self.run) / "report" / "table.csv"
            if table.is_file():
                import pandas as pd

                seeds = [json.loads(p.read_text()) for p in ((run or self.run) / step).glob("seed*/result.json")]
                tops = [x["top1"] for x in seeds if x.get("status") == "done"]
                mean = sum(tops) / len(tops)
                t = pd.read_csv(table)
                row = t[t["step"] == step]
                if row.empty or abs(float(row["top1_mean"].iloc[0]) - mean) > 1e-4:
                    self.fail("wrong", f"{table}: top1_mean for {step} is "
                                       f"{row['top1_mean'].tolist() if not row.empty else 'absent'}, the results' {mean}")
        return r

    def mtime(self, rel: str) -> int:
        return (self.root / rel).stat().st_mtime_ns


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace") if path.exists() else ""


def _under(p: Path, a: Path) -> bool:
    try:
        p.relative_to(a)
        return True
    except ValueError:
        return False


def _scratch_skip(root: Path) -> Callable[[Path], bool]:
    scratch = {root / ".home", root / ".tmp"}
    return lambda p: p in scratch or p.name == "__pycache__"


def _flag(argv: Sequence[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def allowed_paths(argv: Sequence[str], root: Path) -> list[Path]:
    """Where a command may write: train its RUN_DIR (--out, default runs/train); report its --out
    (default RUN_DIR/report); flops and bench their --out; describe and bench-data nothing."""
    def p(x: str) -> Path:
        return Path(os.path.normpath(root / x))

    cmd = argv[0] if argv else ""
    out = _flag(argv, "--out")
    if cmd == "train":
        return [p(out or "runs/train")]
    if cmd == "report":
        pos = [a for a in argv[1:] if not a.startswith("-")]
        run = pos[0] if pos and pos[0] != out else "."
        return [p(out) if out else p(run) / "report"]
    if cmd in ("flops", "bench"):
        return [p(out)] if out else []
    return []


def report_lines(out: str) -> list[str]:
    """The report part of a command's stdout: from the table's header line ("step ...") on."""
    lines = out.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(r"\s*step\s+adopted", ln)), len(lines))
    # a failed job's reason ("non-finite training loss (nan) at ...") names the value on purpose
    return [re.sub(r"non-finite[^()]*\([^)]*\)", "", ln) for ln in lines[start:]]


def one_line_error(ctx: Ctx, res: Res, culprit: str | Sequence[str], rc: int = 2) -> None:
    if res.rc != rc:
        ctx.fail("fail", f"expected exit {rc}, got {res.brief()}")
    errors = [ln for ln in res.lines if ERROR_LINE.match(ln)]
    if len(errors) != 1 or res.last != errors[0]:
        ctx.fail("fail", f"stderr should end with exactly one error line, got {res.lines[-3:]!r}")
    names = [culprit] if isinstance(culprit, str) else list(culprit)
    if not any(c.lower() in res.last.lower() for c in names):
        ctx.fail("fail", f"error line does not name {' / '.join(names)!r}: {res.last[:300]!r}")


# --- shards and templates ---------------------------------------------------------------------------------

class Shard:
    """The cases of one process, in ``base``; the trained tiny run they copy is made once."""

    def __init__(self, base: Path, fresh: bool = False) -> None:
        self.base, self.fresh = base, fresh
        self._template: tuple[Path, float] | None = None

    def template(self) -> tuple[Path, float]:
        if self._template is None:
            ctx = Ctx("_template", self.base / "_template", self, fresh=False)
            ctx.root.mkdir(parents=True, exist_ok=True)
            res = ctx.ok(train(ctx))
            top1 = ctx.done()["top1"]
            if res.rc != 0:
                raise RuntimeError(f"template run failed: {res.err[-500:]}")
            self._template = (ctx.run, float(top1))
        return self._template


@dataclass
class Case:
    id: str
    fn: Callable[[Ctx], None]
    fresh: bool = False


@dataclass
class Outcome:
    id: str
    ok: bool
    kind: str | None
    reason: str
    wall: float
    tally: Tally
    log: list[str]

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.id} ({self.wall:.1f} s)" + ("" if self.ok else f": [{self.kind}] {self.reason}")


CASES: list[Case] = []


def case(cid: str, *, fresh: bool = False) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    def deco(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        if any(c.id == cid for c in CASES):
            raise ValueError(f"duplicate case id {cid}")
        CASES.append(Case(cid, fn, fresh))
        return fn
    return deco


def _outside_snapshot(case_dir: Path, base: Path) -> dict[str, Any]:
    snap = snapshot(REPO, skip=_repo_skip)
    snap.update({k: v for k, v in snapshot(case_dir, skip=lambda p: p == case_dir / "root" or
                                            p.name.startswith(("out", "err")) and p.parent == case_dir).items()})
    snap.update({str(p): ("top",) for p in base.iterdir() if p != case_dir and not p.name.startswith("_")})
    return snap


def run_case(c: Case, base: Path, shard: Shard | None = None, *, fresh: bool = False) -> Outcome:
    """Run one case in ``base/<id>``; never raises."""
    shard = shard or Shard(base, fresh)
    case_dir = base / c.id
    if case_dir.exists():
        _force_rmtree(case_dir)
    (case_dir / "root").mkdir(parents=True)
    (case_dir / "sentinel.txt").write_text("nothing may touch this file\n")
    ctx = Ctx(c.id, case_dir, shard, fresh=fresh or c.fresh)
    before = _outside_snapshot(case_dir, base)
    t0 = time.monotonic()
    ok, kind, reason = True, None, ""
    try:
        c.fn(ctx)
    except CaseFailure as exc:
        ok, kind, reason = False, exc.kind, str(exc)
    except Exception as exc:  # the case's own bug
        ok, kind, reason = False, "fail", f"battery error: {type(exc).__name__}: {exc} " \
                                          f"{traceback.format_exc(limit=-2).splitlines()[-3:]}"
    finally:
        _unfreeze(case_dir)
    bad = changed(before, _outside_snapshot(case_dir, base))
    if bad:
        ctx.tally.outside += 1
        if ok:
            ok, kind, reason = False, "outside", f"written outside the case's root: {', '.join(bad[:3])}"
    return Outcome(c.id, ok, kind, reason, time.monotonic() - t0, ctx.tally, ctx.log)


def _unfreeze(path: Path) -> None:
    """Undo chattr +i / chmod of the read-only folders made under ``path``."""
    for p in [f for f in FROZEN if _under(f, path)]:
        with contextlib.suppress(OSError):
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)
            os.chmod(p, 0o755)
        FROZEN.remove(p)


def _force_rmtree(path: Path) -> None:
    _unfreeze(path)
    shutil.rmtree(path, ignore_errors=True)


# --- helpers shared by the cases -------------------------------------------------------------------------

def R() -> Any:
    import tests.test_reliability as rel

    return rel


def tiny_recipe(ctx: Ctx, name: str = "tiny", extra: str = "", **kw: Any) -> Path:
    return R().recipe_file(ctx.root, name, extra, **kw)


def small_roadmap_text() -> str:
    """The battery's roadmap: the default roadmap's kernel_7 and separate_downsampling (same specs),
    two steps, so that the report written after every training takes a second, not ten."""
    return f"""name = "hostile_tiny"
description = "ResNet-50 to ConvNeXt-T in two steps (the hostile battery's roadmap)"
base = "resnet50"
paper = "{R().ABLATIONS_DIR}/paper/paper_roadmap_r50.csv"

[[steps]]
name = "kernel_7"
paper_row = "kernel_7"
apply = [{{ transform = "stage_ratio", depths = [3, 3, 9, 3] }}, {{ transform = "patchify_stem", patch = 4 }},
         "depthwise", {{ transform = "widen", width = 96 }}, "inverted_bottleneck", "move_up_dwconv",
         {{ transform = "kernel_size", kernel_size = 7 }}]

[[steps]]
name = "{STEP}"
paper_row = "{STEP}"
apply = ["gelu", "fewer_activations", "fewer_norms", "bn_to_ln", "separate_downsampling",
         {{ transform = "layer_scale", init = 1e-6 }}]
"""


def small_roadmap(ctx: Ctx, edit: Callable[[str], str] = lambda t: t, name: str = "hostile_rm.toml") -> Path:
    return ctx.w(name, edit(small_roadmap_text()))


def train(ctx: Ctx, *extra: str, out: Path | None = None, recipe: Path | str | None = None,
          data: str = "synthetic:32", steps: Sequence[str] = (STEP,), roadmap: Path | str | None = None) -> list[str]:
    """The tiny training command (tests/test_reliability.py's: 1 epoch, 2 iterations, 16 px) on the
    battery's two-step roadmap (default) or ``roadmap``."""
    own_steps = "--steps" in extra  # a repeated list flag adds to the first, so the case's replaces ours
    args = R().train_args(ctx.root, out or ctx.run, *extra, data=data,
                          recipe=Path(recipe) if recipe is not None else None, steps=() if own_steps else tuple(steps))
    if own_steps:
        del args[args.index("--steps")]
    args.insert(1, str(roadmap if roadmap is not None else small_roadmap(ctx)))
    return args


def report(ctx: Ctx, run: Path | None = None, *extra: str) -> list[str]:
    return ["report", str(run or ctx.run), *extra]


MINI = ('name = "mini"\nbase = { from = "resnet50", depths = [1, 1, 1, 1], dims = [16, 32, 64, 128], stem_width = 8 }\n'
        '[[steps]]\nname = "r50"\n')
"""A one-step roadmap of a small ResNet: counted or timed in a fraction of a second."""


def flops(ctx: Ctx, *extra: str, roadmap: Path | str | None = None) -> list[str]:
    rm = roadmap if roadmap is not None else ctx.w("mini.toml", MINI)
    return ["flops", str(rm), "--resolution", "32", "--out", str(ctx.root / "flops_out"), *extra]


def bench(ctx: Ctx, *extra: str) -> list[str]:
    """``bench`` of MINI (argv[1] is the roadmap; argv[2:] the flags)."""
    steps = [] if "--steps" in extra else ["--steps", "r50"]  # a repeated list flag adds to the first
    return ["bench", str(ctx.w("mini.toml", MINI)), *steps, "--resolution", "32", "--batch", "2",
            "--repeats", "1", "--out", str(ctx.root / "bench_out"), *extra]


def bench_data(ctx: Ctx, *extra: str) -> list[str]:
    return ["bench-data", "--images", "8", "--measure", "4", "--repeats", "1", "--batch", "4",
            "--recipe", "quick", "--batch-recipe", "quick", *extra]


def describe(*extra: str) -> list[str]:
    return ["describe", "--no-counts", "--step", STEP, *extra]


def roadmap(ctx: Ctx, edit: Callable[[str], str] = lambda t: t, name: str = "rm.toml") -> Path:
    return R().roadmap_copy(ctx.root, edit, name)


def first_step(name_toml: str) -> Callable[[str], str]:
    """An edit: the roadmap's second step ('stage_ratio') renamed (TOML value text)."""
    return lambda t: t.replace('name = "stage_ratio"', f"name = {name_toml}")


def apply_edit(new: str) -> Callable[[str], str]:
    """An edit: stage_ratio's apply line replaced."""
    return lambda t: t.replace('apply = { transform = "stage_ratio", depths = [3, 3, 9, 3] }', new)


FROZEN: list[Path] = []


def readonly(path: Path) -> Path:
    """A folder nobody may write into: mode 555, and (as root, who ignores modes) immutable."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o555)
    FROZEN.append(path)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    return path


def png_bytes(size: tuple[int, int] = (16, 16), mode: str = "L", color: int = 128) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, color=color).save(buf, format="PNG")
    return buf.getvalue()


def image_folder(ctx: Ctx, *, n_train: int = 32, n_val: int = 16, classes: Sequence[str] = ("a", "b"),
                 name: str = "imgs") -> Path:
    """A tiny grey PNG folder data set (16 px), 2 classes."""
    root = ctx.root / name
    for split, n in (("train", n_train), ("val", n_val)):
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n // len(classes)):
                (d / f"{i}.png").write_bytes(png_bytes(color=(40 + 150 * k + 3 * i) % 255))
    return root


def bomb_png(w: int = 100_000, h: int = 100_000) -> bytes:
    """A PNG whose header declares w x h pixels (a decompression bomb for PIL)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def job(ctx: Ctx, name: str, run: Path | None = None) -> Path:
    return (run or ctx.run) / STEP / "seed0" / name


RANDOM = bytes(range(256)) * 3 + b"\x00\xff\xfe" * 50
NOT_UTF8 = b'{"status": "done", "top1": 5\xff\xfe}'


# === the cases ================================================================================================
def _tiny_lines(**over: str | None) -> str:
    """The tiny recipe as TOML text; keys in ``over`` replaced by raw TOML values (None: dropped, new: added)."""
    vals = {k: json.dumps(v) for k, v in R().TINY.items()}
    for k, v in over.items():
        if v is None:
            vals.pop(k, None)
        else:
            vals[k] = v
    return "\n".join(f"{k} = {v}" for k, v in vals.items()) + "\n"


def bad_recipe(ctx: Ctx, sub: bool = True, extra: str = "", **over: str | None) -> Path:
    return ctx.w("bad.toml", _tiny_lines(**over) + extra + (R().SUB if sub else ""))


def refuse_on_trained(ctx: Ctx, argv: Callable[[Ctx], list[str]], culprit: str | Sequence[str],
                      fix: Callable[[Ctx], list[str]] | None = None, **kw: Any) -> None:
    """On a trained run folder: the hostile command is refused and changes nothing; the correct
    command then finds the finished job (same top-1)."""
    top1 = ctx.trained()
    ctx.refused(argv(ctx), culprit, **kw)
    ctx.ok((fix or train)(ctx))
    ctx.done(top1)


# --- 1. flags and values ------------------------------------------------------------------------------

def _flops_flag(args: list[str], culprit: str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        ctx.refused(flops(ctx, *args), culprit, keep=[ctx.root / "flops_out"])
        ctx.ok(flops(ctx))
    return fn


for _id, _args, _cul in [
    ("nan", ["--resolution", "nan"], "--resolution"), ("inf", ["--resolution", "inf"], "--resolution"),
    ("negative", ["--resolution", "-64"], "--resolution"), ("huge", ["--resolution", "100000000"], "--resolution"),
    ("float", ["--resolution", "224.5"], "--resolution"), ("empty", ["--resolution", ""], "--resolution"),
    ("hex", ["--resolution", "0x40"], "--resolution"),
]:
    case(f"flops-resolution-{_id}")(_flops_flag(_args, _cul))
case("flops-unknown-flag")(_flops_flag(["--frobnicate"], "--frobnicate"))


def _describe_flag(args: list[str], culprit: str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        ctx.refused(["describe", *args], culprit)
    return fn


case("describe-resolution-nan")(_describe_flag(["--step", STEP, "--resolution", "nan"], "--resolution"))
case("describe-resolution-huge")(_describe_flag(["--step", STEP, "--resolution", "100000000"], "--resolution"))
case("describe-step-empty")(_describe_flag(["--no-counts", "--step", ""], "step"))
case("describe-roadmap-missing")(_describe_flag(["nope.toml", "--no-counts"], "nope.toml"))


def _bench_flag(args: list[str], culprit: str | Sequence[str]) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        ctx.refused(bench(ctx, *args), culprit, keep=[ctx.root / "bench_out"])
    return fn


for _id, _args, _cul in [
    ("batch-nan", ["--batch", "nan"], "--batch"), ("batch-negative", ["--batch", "-8"], "--batch"),
    ("batch-huge", ["--batch", "1000000000000"], ["--batch", "batch"]), ("repeats-zero", ["--repeats", "0"], "--repeats"),
    ("warmup-word", ["--warmup", "some"], "--warmup"), ("threads-zero", ["--threads", "0"], "--threads"),
    ("steps-empty", ["--steps", ""], "--steps"), ("steps-commas", ["--steps", ",,"], "--steps"),
    ("resolution-inf", ["--resolution", "inf"], "--resolution"), ("device-cuda", ["--device", "cuda"], "cuda"),
    ("parity-no-twin", ["--parity"], "r50"), ("batch-one-batchnorm", ["--batch", "1"], "--batch"), ("threads-huge", ["--threads", "100000"], "--threads"),
]:
    case(f"bench-{_id}")(_bench_flag(_args, _cul))


@case("bench-then-fixed")
def _bench_fixed(ctx: Ctx) -> None:
    ctx.refused(bench(ctx, "--batch", "nan"), "--batch", keep=[ctx.root / "bench_out"])
    ctx.ok(bench(ctx))
    if not (ctx.root / "bench_out" / "bench.csv").is_file():
        ctx.fail("wrong", "bench exited 0 without bench_out/bench.csv")


def _bd_flag(args: list[str], culprit: str | Sequence[str], fix: bool = False) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        ctx.refused(bench_data(ctx, *[a(ctx) if callable(a) else a for a in args]), culprit)
        if fix:
            ctx.ok(bench_data(ctx))
        left = [p for p in (ctx.root / ".tmp").glob("*")]
        if left:
            ctx.fail("outside", f"bench-data left temp files behind: {left[:3]}")
    return fn


def _bd_images(kind: str) -> Callable[[Ctx], str]:
    def make(ctx: Ctx) -> str:
        root = image_folder(ctx, n_train=8, n_val=4)
        if kind == "text-png":
            for p in root.rglob("*.png"):
                p.write_text("this is not an image\n")
        elif kind == "empty-train":
            shutil.rmtree(root / "train")
            (root / "train").mkdir()
        return f"imagefolder:{root}"
    return make


for _id, _args, _cul, _fix in [
    ("images-zero", ["--images", "0"], "--images", False), ("images-huge", ["--images", "10000000000"], "--images", False),
    ("threads-huge", ["--threads", "100000"], "--threads", False), ("measure-nan", ["--measure", "nan"], "--measure", False),
    ("train-img-s-nan", ["--train-img-s", "nan"], "--train-img-s", False),
    ("train-img-s-negative", ["--train-img-s", "-5"], "--train-img-s", False),
    ("recipe-missing", ["--recipe", "nope"], "nope", False), ("data-synthetic", ["--data", "synthetic:32"], "synthetic", False),
    ("data-missing-folder", ["--data", "imagefolder:/no/such/folder"], "/no/such/folder", False),
    ("data-text-png", ["--data", _bd_images("text-png")], ".png", False),
    ("data-empty-train", ["--data", _bd_images("empty-train")], "train", False),
    ("resolution-zero", ["--resolution", "0"], "--resolution", False),
    ("batch-recipe-missing", ["--batch-recipe", "nope"], "nope", True),
]:
    case(f"bench-data-{_id}")(_bd_flag(_args, _cul, _fix))


def _train_flag(args: list[str], culprit: str | Sequence[str], data: str = "synthetic:32") -> Callable[[Ctx], None]:
    return lambda ctx: refuse_on_trained(ctx, lambda c: train(c, *args, data=data), culprit)


for _id, _args, _cul in [
    ("seeds-nan", ["--seeds", "nan"], "--seeds"), ("seeds-huge", ["--seeds", str(10 ** 30)], "seed"),
    ("seeds-word", ["--seeds", "zero"], "--seeds"), ("width-nan", ["--width", "nan"], "width"),
    ("width-inf", ["--width", "inf"], "width"), ("width-zero", ["--width", "0"], "width"),
    ("width-huge", ["--width", "1e9"], "width"), ("depth-negative", ["--depth", "-1"], "depth"),
    ("layer-scale-nan", ["--layer-scale", "nan"], "layer-scale"), ("layer-scale-two", ["--layer-scale", "2"], "layer-scale"),
    ("low-res-three", ["--low-res", "3"], "--low-res"), ("ckpt-every-negative", ["--ckpt-every", "-1"], "--ckpt-every"),
    ("threads-negative", ["--threads", "-1"], "--threads"), ("workers-nan", ["--workers", "nan"], "--workers"),
    ("threads-huge", ["--threads", "100000"], "--threads"), ("workers-huge", ["--workers", "100000"], "--workers"),
    ("claim-timeout-inf", ["--claim-timeout", "inf"], "--claim-timeout"),
    ("device-cuda-word", ["--device", "cuda:abc"], "cuda:abc"), ("device-cuda", ["--device", "cuda"], "cuda"),
    ("steps-empty", ["--steps", ""], "--steps"), ("steps-huge-name", ["--steps", "x" * 100_000], "--steps"),
]:
    case(f"train-flag-{_id}")(_train_flag(_args, _cul))
for _id, _data, _cul in [("synthetic-five", "synthetic:5", "synthetic:5"), ("synthetic-word", "synthetic:abc", "synthetic:abc"),
                         ("synthetic-huge", "synthetic:1000000000000", "synthetic:1000000000000"),
                         ("empty", "", "--data"), ("cifar-missing", "cifar10:/no/such", "/no/such")]:
    case(f"train-data-{_id}")(_train_flag([], _cul, data=_data))


@case("train-recipe-is-directory")
def _recipe_dir(ctx: Ctx) -> None:
    (ctx.root / "recipes.toml").mkdir()
    refuse_on_trained(ctx, lambda c: train(c, recipe=c.root / "recipes.toml"), "recipes.toml")


# --- 2. recipes: wrong types in every field, unknown keys, broken files ---------------------------------

RECIPE_FAULTS = [  # (key, TOML value, culprit)
    ("epochs", '"1"', "epochs"), ("epochs", "1.5", "epochs"), ("epochs", "0", "epochs"), ("epochs", "true", "epochs"),
    ("batch_size", "-1", "batch_size"), ("batch_size", "1000000000", "batch"), ("lr", "-1e-3", "'lr'"),
    ("lr", "inf", "'lr'"), ("lr", "[0.1]", "'lr'"), ("lr_batch", "0", "lr_batch"), ("resolution", "0", "resolution"),
    ("resolution", "100000000", "resolution"), ("optimizer", '"lion"', "optimizer"), ("schedule", '"poly"', "schedule"),
    ("crop", '"center"', "crop"), ("betas", "[0.9]", "betas"), ("betas", '"0.9,0.99"', "betas"),
    ("decay_epochs", '"x"', "decay_epochs"), ("decay_epochs", "[inf]", "decay_epochs"), ("precision", '"fp8"', "precision"),
    ("proxy", '"huge"', "proxy"), ("train_images", "-1", "train_images"), ("val_images", '"all"', "val_images"),
    ("bad_images", '"ignore"', "bad_images"), ("hflip", '"yes"', "hflip"), ("ema_decay", "1.0", "ema_decay"),
    ("label_smoothing", "1.0", "label_smoothing"), ("drop_path", "nan", "drop_path"),
    ("randaugment_magnitude", "31", "randaugment_magnitude"), ("resize", "-1", "resize"), ("mixup", "true", "mixup"),
    ("warmup_epochs", "5", "warmup_epochs"), ("name", "5", "name"), ("description", "[1]", "description"),
    ("grad_clip", "-inf", "grad_clip"), ("channels_last", "1", "channels_last"), ("lr_warmup", "1", "lr_warmup"),
    ("momentum", "{ a = 1 }", "momentum"), ("lr", "2020-01-02T03:04:05", "'lr'"), ("weight_decay", "false", "weight_decay"),
]
_seen: dict[str, int] = {}
for _key, _val, _cul in RECIPE_FAULTS:
    _seen[_key] = _seen.get(_key, 0) + 1
    _cid = f"recipe-{_key}-{_seen[_key]}"
    case(_cid)((lambda k, v, c: lambda ctx: refuse_on_trained(
        ctx, lambda cc: train(cc, recipe=bad_recipe(cc, **{k: v})), c))(_key, _val, _cul))

RECIPE_FILES = [  # (id, file content, culprit)
    ("toml-syntax", "lr = = 1\n", "bad.toml"), ("random-bytes", RANDOM, "bad.toml"),
    ("deep-nesting", "lr = " + "[" * 3000 + "]" * 3000 + "\n", "bad.toml"),
    ("substitute-not-table", _tiny_lines() + "substitute = 5\n", "substitute"),
    ("substitute-entry-int", _tiny_lines() + "[substitute]\nresnet_original = 5\n", "substitute"),
    ("substitute-unknown-key", _tiny_lines() + "[substitute.resnet_original]\nfoo = 1\n", "foo"),
    ("substitute-nan", _tiny_lines() + "[substitute.resnet_original]\nlr = nan\nepochs = 1\n", "lr"),
    # found by tests/test_types.py (every key, every type): refused at load, never coerced
    ("substitute-datetime", _tiny_lines() + "[substitute.resnet_original]\nepochs = 2020-01-02\n", "epochs"),
    ("substitute-bool-for-float", _tiny_lines() + "[substitute.resnet_original]\nlr = true\n", "lr"),
    ("utf16", _tiny_lines().encode("utf-16"), "bad.toml"),
]
DEFAULT_RM = "resnet50_to_convnext_t"  # has a step with a recipe override (resnet50): substitutes apply
for _id, _content, _cul in RECIPE_FILES:
    case(f"recipe-file-{_id}")((lambda content, c: lambda ctx: refuse_on_trained(
        ctx, lambda cc: train(cc, recipe=cc.w("bad.toml", content), roadmap=DEFAULT_RM), c))(_content, _cul))


@case("recipe-file-fifo")
def _recipe_fifo(ctx: Ctx) -> None:
    os.mkfifo(ctx.root / "fifo.toml")
    refuse_on_trained(ctx, lambda c: train(c, recipe=c.root / "fifo.toml"), "fifo.toml")


@case("recipe-unicode-name-accepted")
def _recipe_unicode(ctx: Ctx) -> None:
    path = ctx.w("réc✓ipe.toml", _tiny_lines(name='"レシピ ✓"') + R().SUB)
    ctx.ok(train(ctx, recipe=path))
    ctx.done(ctx.shard.template()[1])


@case("recipe-lr-huge-fails-the-job")
def _recipe_lr_huge(ctx: Ctx) -> None:
    """lr = 1e30: the loss goes non-finite; the job is recorded as failed, the report says so."""
    res = ctx.ok(train(ctx, recipe=bad_recipe(ctx, lr="1e30")))
    r = ctx.result()
    if r.get("status") != "failed" or "non-finite" not in str(r.get("reason")):
        ctx.fail("wrong", f"lr = 1e30: result {r.get('status')!r} ({r.get('reason')!r}), expected failed (non-finite loss)")
    if "failed" not in res.out:
        ctx.fail("wrong", "the report printed after training does not show the failed job")


# --- 3. roadmaps: malformed, edited, unsafe step names -------------------------------------------------

ROADMAP_FAULTS: list[tuple[str, Callable[[Ctx], Path], str | Sequence[str]]] = [
    ("empty-file", lambda c: c.w("bad.toml", ""), "bad.toml"),
    ("random-bytes", lambda c: c.w("bad.toml", RANDOM), "bad.toml"),
    ("directory", lambda c: (c.root / "bad.toml").mkdir() or c.root / "bad.toml", "bad.toml"),
    ("deep-nesting", lambda c: c.w("bad.toml", "name = " + "[" * 3000 + "]" * 3000 + "\n"), "bad.toml"),
    ("unknown-top-key", lambda c: roadmap(c, lambda t: "colour = 1\n" + t), "colour"),
    ("step-unknown-key", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nweight = 3')), "weight"),
    ("step-unicode", lambda c: roadmap(c, first_step('"ステップ"')), "ステップ"),
    ("step-empty", lambda c: roadmap(c, first_step('""')), "name"),
    ("step-dotdot", lambda c: roadmap(c, first_step('"../x"')), "../x"),
    ("step-run-json", lambda c: roadmap(c, first_step('"run.json"')), "run.json"),
    ("step-lock", lambda c: roadmap(c, first_step('"x.lock"')), "x.lock"),
    ("step-int", lambda c: roadmap(c, first_step("5")), "name"),
    ("step-newline", lambda c: roadmap(c, first_step('"a\\nb"')), "step"),
    ("adopted-string", lambda c: roadmap(c, lambda t: t.replace('name = "kernel_5"\npaper_row = "kernel_5"\nfrom = "move_up_dwconv"\nadopted = false', 'name = "kernel_5"\npaper_row = "kernel_5"\nfrom = "move_up_dwconv"\nadopted = "no"')), "adopted"),
    ("from-later-step", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nfrom = "gelu"')), "gelu"),
    ("duplicate-step", lambda c: roadmap(c, first_step('"recipe"')), "recipe"),
    ("depths-string", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = "3,3,9,3" }')), "depths"),
    ("depths-float", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = [3.5, 3, 9, 3] }')), "depths"),
    ("depths-negative", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = [-1, 3, 9, 3] }')), "depth"),
    ("depths-huge", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = [3, 3, 1000000000, 3] }')), "depth"),
    ("width-huge", lambda c: roadmap(c, lambda t: t.replace("width = 96", "width = 1000000000")), "width"),
    ("apply-unknown-param", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = [3, 3, 9, 3], colour = 1 }')), "colour"),
    ("apply-int", lambda c: roadmap(c, apply_edit("apply = 5")), "apply"),
    ("kernel-even", lambda c: roadmap(c, lambda t: t.replace("kernel_size = 7", "kernel_size = 4")), "kernel_size"),
    ("kernel-nan", lambda c: roadmap(c, lambda t: t.replace("kernel_size = 7", "kernel_size = nan")), "kernel_size"),
    ("base-unknown", lambda c: roadmap(c, lambda t: t.replace('base = "resnet50"', 'base = "resnet9000"')), "resnet9000"),
    ("base-table-unknown-field", lambda c: roadmap(c, lambda t: t.replace('base = "resnet50"', 'base = { colour = 1 }')), "colour"),
    ("steps-empty-list", lambda c: c.w("bad.toml", 'name = "x"\nsteps = []\n'), "steps"),
    ("paper-missing", lambda c: roadmap(c, lambda t: t.replace(f'paper = "{R().ABLATIONS_DIR}/paper/paper_roadmap_r50.csv"', 'paper = "nope.csv"')), "nope.csv"),
    ("paper-not-utf8", lambda c: (c.w("p.csv", b"row,x\nresnet50,\xff\xfe\n"), roadmap(c, lambda t: t.replace(f'paper = "{R().ABLATIONS_DIR}/paper/paper_roadmap_r50.csv"', 'paper = "p.csv"')))[1], "p.csv"),
    ("paper-random", lambda c: (c.w("p.csv", RANDOM), roadmap(c, lambda t: t.replace(f'paper = "{R().ABLATIONS_DIR}/paper/paper_roadmap_r50.csv"', 'paper = "p.csv"')))[1], "p.csv"),
    ("paper-row-unknown", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ration"')), "stage_ration"),
    ("change-list", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nchange = [1]')), "change"),
    # found by tests/test_types.py (every key, every type): a list or table where a string belongs
    ("from-list", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nfrom = ["a"]')), "from"),
    ("from-table", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nfrom = { a = 1 }')), "from"),
    ("paper-row-list", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = ["stage_ratio"]')), "paper_row"),
    ("paper-row-table", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = { a = 1 }')), "paper_row"),
    ("adopted-int", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nadopted = 1')), "adopted"),
    ("description-datetime", lambda c: roadmap(c, lambda t: re.sub(r"(?m)^description = .*$", "description = 2020-01-02T03:04:05", t, count=1)), "description"),
    ("imports-empty-name", lambda c: roadmap(c, lambda t: 'imports = [""]\n' + t), "imports"),
    ("apply-param-date", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = 2020-01-02 }')), "depths"),
]
for _id, _make, _cul in ROADMAP_FAULTS:
    case(f"roadmap-{_id}")((lambda make, c: lambda ctx: (
        ctx.refused(flops(ctx, roadmap=make(ctx)), c, keep=[ctx.root / "flops_out"]), ctx.ok(flops(ctx))))(_make, _cul))


@case("roadmap-fifo")
def _roadmap_fifo(ctx: Ctx) -> None:
    os.mkfifo(ctx.root / "rm.toml")
    ctx.refused(["describe", str(ctx.root / "rm.toml"), "--no-counts"], "rm.toml")


SMALL_FAULTS = {  # the same faults in the battery's own roadmap, for train on its trained run folder
    "step-dotdot": lambda t: t.replace('name = "kernel_7"', 'name = "../x"'),
    "step-unicode": lambda t: t.replace('name = "kernel_7"', 'name = "ステップ"'),
    "depths-huge": lambda t: t.replace("depths = [3, 3, 9, 3]", "depths = [3, 3, 1000000000, 3]"),
    "kernel-nan": lambda t: t.replace("kernel_size = 7", "kernel_size = nan"),
}
for _id, _make, _cul in [r for r in ROADMAP_FAULTS if r[0] in SMALL_FAULTS]:
    case(f"train-roadmap-{_id}")((lambda edit, c: lambda ctx: refuse_on_trained(
        ctx, lambda cc: train(cc, roadmap=small_roadmap(cc, edit, "bad.toml")), c))(SMALL_FAULTS[_id], _cul))
    case(f"describe-roadmap-{_id}")((lambda make, c: lambda ctx: ctx.refused(["describe", make(ctx)], c))(_make, _cul))
    case(f"bench-roadmap-{_id}")((lambda make, c: lambda ctx: ctx.refused(
        ["bench", make(ctx), *bench(ctx)[2:]], c, keep=[ctx.root / "bench_out"]))(_make, _cul))


@case("train-roadmap-step-recipe-unknown")
def _step_recipe(ctx: Ctx) -> None:
    rm = small_roadmap(ctx, lambda t: t.replace('paper_row = "kernel_7"', 'paper_row = "kernel_7"\nrecipe = "nope_recipe"'),
                       "bad.toml")
    refuse_on_trained(ctx, lambda c: train(c, roadmap=rm), "nope_recipe")


# --- 4. an edited roadmap / recipe / data on an old RUN_DIR; deleted run.json; --force ------------------

def _edited_depths(ctx: Ctx) -> Path:
    return small_roadmap(ctx, lambda t: t.replace("depths = [3, 3, 9, 3]", "depths = [2, 2, 6, 2]"), "edited.toml")


@case("rundir-edited-roadmap-refused-then-force")
def _edited_roadmap(ctx: Ctx) -> None:
    ctx.trained()
    old = (job(ctx, "result.json")).read_bytes()
    ctx.refused(train(ctx, roadmap=_edited_depths(ctx)), [f"{STEP}/seed0"])
    ctx.ok(train(ctx, "--force", roadmap=_edited_depths(ctx)))
    moved = list((ctx.run / ".replaced").glob(f"*/{STEP}/seed0/result.json"))
    if len(moved) != 1 or moved[0].read_bytes() != old:
        ctx.fail("wrong", f"--force: the old job is not kept intact under .replaced/ ({moved})")
    ctx.done()


@case("rundir-cosmetic-roadmap-edit-reused")
def _cosmetic(ctx: Ctx) -> None:
    top1 = ctx.trained()
    before = job(ctx, "result.json").read_bytes()
    rm = small_roadmap(ctx, lambda t: t.replace('description = "', 'description = "(my copy) ').replace(
        "[[steps]]", "# an edited comment\n[[steps]]", 1), "cosmetic.toml")
    ctx.ok(train(ctx, roadmap=rm))
    if job(ctx, "result.json").read_bytes() != before:
        ctx.fail("wrong", "a description/comment edit retrained the job")
    ctx.done(top1)


@case("rundir-edited-recipe-refused")
def _edited_recipe(ctx: Ctx) -> None:
    refuse_on_trained(ctx, lambda c: train(c, recipe=tiny_recipe(c, "tiny2", lr=1e-3)), ["seed0"])


@case("rundir-edited-recipe-force")
def _edited_recipe_force(ctx: Ctx) -> None:
    ctx.trained()
    ctx.ok(train(ctx, "--force", recipe=tiny_recipe(ctx, "tiny2", lr=1e-3)))
    if not list((ctx.run / ".replaced").glob(f"*/{STEP}/seed0/result.json")):
        ctx.fail("wrong", "--force with another recipe: the old job was not moved to .replaced/")
    ctx.done()


@case("rundir-renamed-recipe-reused")
def _renamed_recipe(ctx: Ctx) -> None:
    """The same recipe values under another file name: run.json records the name, so the run is
    refused naming it (or accepted); either way the finished job is reused, never retrained."""
    top1 = ctx.trained()
    before = job(ctx, "result.json").read_bytes()
    argv = train(ctx, recipe=shutil.copy(tiny_recipe(ctx), ctx.root / "same_values.toml"))
    res = ctx.cli(argv)
    if res.rc == 2:
        one_line_error(ctx, res, "recipe.name")
        ctx.ok(argv + ["--force"])
    elif res.rc != 0:
        ctx.fail("fail", f"renamed recipe: {res.brief()}")
    if job(ctx, "result.json").read_bytes() != before or (ctx.run / ".replaced").exists():
        ctx.fail("wrong", "the same recipe values under another file name retrained the job")
    ctx.done(top1)


@case("rundir-changed-data-refused")
def _changed_data(ctx: Ctx) -> None:
    refuse_on_trained(ctx, lambda c: train(c, data="synthetic:48"), ["seed0"])


@case("rundir-force-identical-moves-nothing")
def _force_identical(ctx: Ctx) -> None:
    top1 = ctx.trained()
    before = job(ctx, "result.json").read_bytes()
    ctx.ok(train(ctx, "--force"))
    if (ctx.run / ".replaced").exists() or job(ctx, "result.json").read_bytes() != before:
        ctx.fail("wrong", "--force with an identical config moved or retrained the job")
    ctx.done(top1)


@case("runjson-deleted-same-config")
def _rj_deleted(ctx: Ctx) -> None:
    top1 = ctx.trained()
    (ctx.run / "run.json").unlink()
    ctx.ok(train(ctx))
    if not (ctx.run / "run.json").is_file():
        ctx.fail("wrong", "run.json not written again")
    ctx.done(top1)


@case("runjson-deleted-other-config-refused")
def _rj_deleted_other(ctx: Ctx) -> None:
    ctx.trained()
    (ctx.run / "run.json").unlink()
    ctx.refused(train(ctx, data="synthetic:48"), ["seed0"])
    ctx.ok(train(ctx))
    ctx.done(ctx.shard.template()[1])


@case("runjson-deleted-report-refused")
def _rj_deleted_report(ctx: Ctx) -> None:
    ctx.trained()
    (ctx.run / "run.json").unlink()
    ctx.refused(report(ctx), "run.json")
    ctx.ok(train(ctx))
    ctx.ok(report(ctx))
    ctx.done(ctx.shard.template()[1])


# --- 5. corrupt run files --------------------------------------------------------------------------

CORRUPT = {"empty": b"", "random": RANDOM, "not-utf8": NOT_UTF8, "array": b"[1, 2, 3]",
           "deep": b"[" * 100_000 + b"]" * 100_000}


def _corrupt(ctx: Ctx, rel: str, content: bytes | str) -> Path:
    path = ctx.run / rel
    if content == "fifo":
        path.unlink(missing_ok=True)
        os.mkfifo(path)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _result_case(name: str, content: bytes | str, report_rc: int) -> Callable[[Ctx], None]:
    """Report: refused naming result.json (or a clean table without it); train: the job is repaired
    from its checkpoint (same top-1), then the report is right."""
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        _corrupt(ctx, f"{STEP}/seed0/result.json", content)
        if report_rc == 2:
            ctx.refused(report(ctx, None, "--out", str(ctx.root / "rep")), "result.json", keep=[ctx.run])
        else:
            ctx.ok(report(ctx, None, "--out", str(ctx.root / "rep")))
        ctx.ok(train(ctx))
        ctx.done(top1)
    return fn


for _name in ("empty", "random", "not-utf8", "array"):
    case(f"result-json-{_name}")(_result_case(_name, CORRUPT[_name], 2))
case("result-json-status-weird")(_result_case("weird", json.dumps({"status": "weird", "top1": 5.0}), 2))
case("report-result-json-deep")(lambda ctx: (ctx.trained(), _corrupt(ctx, f"{STEP}/seed0/result.json", CORRUPT["deep"]),
                                             ctx.refused(report(ctx), "result.json")))
case("report-result-json-fifo")(lambda ctx: (ctx.trained(), _corrupt(ctx, f"{STEP}/seed0/result.json", "fifo"),
                                             ctx.ok(report(ctx))))  # shown as missing; must not block
case("train-result-json-deep")(lambda ctx: (ctx.trained(), _corrupt(ctx, f"{STEP}/seed0/result.json", CORRUPT["deep"]),
                                            ctx.ok(train(ctx)), ctx.done(ctx.shard.template()[1])))
case("train-result-json-fifo")(lambda ctx: (ctx.trained(), _corrupt(ctx, f"{STEP}/seed0/result.json", "fifo"),
                                            ctx.ok(train(ctx)), ctx.done(ctx.shard.template()[1])))


def _result_value_case(key: str, raw: str) -> Callable[[Ctx], None]:
    """A finished job's result.json edited to hold NaN / Infinity: the report never prints a
    non-finite number and does not count the job as a result. Text where a number belongs is the
    wrong type: the report refuses it, naming the file and the key (issue 23: never coerced)."""
    def fn(ctx: Ctx) -> None:
        ctx.trained()
        path = job(ctx, "result.json")
        text = re.sub(rf'"{key}": [^,\n}}]+', f'"{key}": {raw}', path.read_text())
        path.write_text(text)
        if raw.startswith('"'):
            res = ctx.refused(report(ctx, None, "--out", str(ctx.root / "rep")), [f"'{key}'"])
            if "result.json" not in res.last:
                ctx.fail("fail", f"the error line does not name result.json: {res.last[:200]!r}")
            return
        res = ctx.ok(report(ctx, None, "--out", str(ctx.root / "rep")))
        md = (ctx.root / "rep" / "table.md").read_text()
        bad = [ln for ln in md.splitlines() if ln.startswith(f"| {STEP} ") and NONFINITE.search(ln)]
        if bad:
            ctx.fail("wrong", f"table.md shows a non-finite number: {bad[0][:200]}")
        if key == "top1":
            row = [ln for ln in res.out.splitlines() if ln.strip().startswith(STEP)]
            if row and re.search(r"\d+\.\d\d \(n=1\)", row[0]):
                ctx.fail("wrong", f"a top1 of {raw} is shown as a result: {row[0].strip()[:160]}")
    return fn


for _key, _raw in [("top1", "NaN"), ("top1", "Infinity"), ("top1", '"abc"'), ("top1", "-Infinity"),
                   ("gmacs", "NaN"), ("params_m", "Infinity")]:
    case(f"result-json-{_key}-{_raw.strip(chr(34)).lower()}")(_result_value_case(_key, _raw))


def _config_case(content: bytes | str | None) -> Callable[[Ctx], None]:
    """config.json unreadable or missing: train refuses naming the job; --force retrains it (the old
    folder kept under .replaced/), with the uninterrupted run's numbers."""
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        if content is None:
            job(ctx, "config.json").unlink()
        else:
            _corrupt(ctx, f"{STEP}/seed0/config.json", content)
        ctx.refused(train(ctx), ["seed0"])
        ctx.ok(train(ctx, "--force"))
        ctx.done(top1)
    return fn


for _name in ("empty", "random", "not-utf8", "array", "deep"):
    case(f"config-json-{_name}")(_config_case(CORRUPT[_name]))
case("config-json-nan-fingerprint")(_config_case('{"fingerprint": NaN, "fingerprint_parts": {"seed": Infinity}}'))
case("config-json-deleted")(_config_case(None))
case("config-json-fifo")(_config_case("fifo"))


def _log_case(content: bytes | str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        path = job(ctx, "log.csv")
        if content == "dir":
            path.unlink()
            path.mkdir()
        else:
            _corrupt(ctx, f"{STEP}/seed0/log.csv", content)
        ctx.ok(report(ctx))
        ctx.ok(train(ctx))
        ctx.done(top1)
    return fn


for _id, _content in [("empty", b""), ("random", RANDOM), ("not-utf8", b"epoch,top1\n1,\xff\xfe\n"),
                      ("nan-values", "epoch,train_loss,val_loss,top1,top5,lr,img_per_s,seconds\n1,nan,inf,nan,-inf,0,0,0\n"),
                      ("text-values", "epoch,top1\none,high\n"), ("directory", "dir")]:
    case(f"log-csv-{_id}")(_log_case(_content))


def _ckpt_case(make: Callable[[Ctx, Path], None], *, warn: str | None = "last.pt",
               refuse: str | None = None, fix: Callable[[Ctx], Any] | None = None) -> Callable[[Ctx], None]:
    """The job's result.json says running (the process died) and last.pt is hostile: the job is
    retrained or resumed to the uninterrupted run's numbers, or refused naming the checkpoint
    (then removing it is enough)."""
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        r = job(ctx, "result.json")
        r.write_text(json.dumps(json.loads(r.read_text()) | {"status": "running"}))
        make(ctx, job(ctx, "last.pt"))
        if refuse:
            ctx.refused(train(ctx), refuse, keep=[])
            if fix is not None:
                fix(ctx)
                ctx.ok(train(ctx))
            else:
                ctx.ok(train(ctx, "--force"))
        else:
            ctx.ok(train(ctx), warn=warn)
        ctx.done(top1)
    return fn


def in_child(fn: Callable[[], Any]) -> None:
    """Run ``fn`` in a forked child: a torch op in this process can start a thread, and a later
    fork of a process with threads may hang (the children must be forked from a torch-idle parent)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("setup in a child process failed (see its traceback above)")


def _torch_save(obj: Any) -> Callable[[Ctx, Path], None]:
    def make(ctx: Ctx, path: Path) -> None:
        import torch

        in_child(lambda: torch.save(obj, path))
    return make


case("last-pt-empty")(_ckpt_case(lambda c, p: p.write_bytes(b"")))
case("last-pt-random")(_ckpt_case(lambda c, p: p.write_bytes(RANDOM)))
case("last-pt-list")(_ckpt_case(_torch_save([1, 2, 3])))
case("last-pt-wrong-model")(_ckpt_case(_torch_save({"model": {"w": 1}, "optimizer": {}, "scheduler": {}, "epoch": 0,
                                                    "iter": 0, "rng": [], "scaler": {}})))
case("last-pt-directory")(_ckpt_case(lambda c, p: (p.unlink(), p.mkdir()), refuse="last.pt",
                                     fix=lambda c: job(c, "last.pt").rmdir()))
case("last-pt-fifo")(_ckpt_case(lambda c, p: (p.unlink(), os.mkfifo(p)), warn=None))


@case("last-pt-nan-weights")
def _nan_weights(ctx: Ctx) -> None:
    """A checkpoint whose weights were edited to NaN, mid-epoch: the resumed job fails on a
    non-finite loss and says so (result.json and the report), never a number."""
    import torch

    ctx.trained()
    ck_path = job(ctx, "last.pt")

    def edit() -> None:
        ck = torch.load(ck_path, weights_only=False)
        ck["model"] = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in ck["model"].items()}
        ck["epoch"], ck["iter"], ck["log"], ck["best_top1"] = 0, 1, [], -1.0  # a checkpoint from mid-epoch 1
        torch.save(ck, ck_path)

    in_child(edit)
    r = job(ctx, "result.json")
    r.write_text(json.dumps(json.loads(r.read_text()) | {"status": "running"}))
    res = ctx.ok(train(ctx))
    got = ctx.result()
    if got.get("status") != "failed" or got.get("top1") is not None:
        ctx.fail("wrong", f"NaN weights: result {got.get('status')!r}, top1 {got.get('top1')!r} (expected failed, no top1)")
    row = [ln for ln in report_lines(res.out) if ln.strip().startswith(STEP)]
    if not row or "failed" not in row[0]:
        ctx.fail("wrong", f"the report does not show the failed job: {row[:1]}")


case("last-and-prev-pt-corrupt")(_ckpt_case(lambda c, p: (p.write_bytes(b"x"), p.with_name("prev.pt").write_bytes(b"y"))))


def _claim_case(body: bytes, age_s: float, *extra: str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        r = job(ctx, "result.json")
        r.write_text(json.dumps(json.loads(r.read_text()) | {"status": "running"}))
        claim = job(ctx, "claim.json")
        claim.write_bytes(body)
        os.utime(claim, (time.time() - age_s, time.time() - age_s))
        ctx.ok(train(ctx, *extra))
        ctx.done(top1)
        if claim.exists():
            ctx.fail("wrong", "claim.json left behind after the job finished")
    return fn


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


case("claim-garbage-old")(_claim_case(RANDOM, 3600))
case("claim-dead-owner")(lambda ctx: _claim_case(json.dumps({"host": __import__("socket").gethostname(),
                                                               "pid": _dead_pid(), "started": 0, "token": "x"}).encode(),
                                                   0)(ctx))
case("claim-silent-owner-elsewhere")(_claim_case(json.dumps({"host": "another-host", "pid": 1, "started": 0,
                                                             "token": "x"}).encode(), 0, "--claim-timeout", "3"))


def _runjson_train(content: bytes | str, culprit: str, fix: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        before = job(ctx, "result.json").read_bytes()
        _corrupt(ctx, "run.json", content)
        ctx.refused(train(ctx), culprit)
        fix(ctx)
        if job(ctx, "result.json").read_bytes() != before:
            ctx.fail("wrong", "the finished job was retrained")
        ctx.done(top1)
    return fn


case("runjson-empty-train")(_runjson_train(b"", "run.json", lambda c: ((c.run / "run.json").unlink(), c.ok(train(c)))))
case("runjson-nan-train")(_runjson_train('{"config_hash": NaN}', "run.json",
                                         lambda c: ((c.run / "run.json").unlink(), c.ok(train(c)))))
case("runjson-deep-train")(_runjson_train(CORRUPT["deep"], "run.json",
                                          lambda c: ((c.run / "run.json").unlink(), c.ok(train(c)))))


@case("runjson-fifo-report-then-train")
def _rj_fifo(ctx: Ctx) -> None:
    top1 = ctx.trained()
    _corrupt(ctx, "run.json", "fifo")
    ctx.refused(report(ctx), "run.json")
    ctx.ok(train(ctx))
    ctx.done(top1)


REPORT_RUNJSON = [  # run.json edits the report must refuse, naming run.json
    ("empty", b""), ("random", RANDOM), ("deep", CORRUPT["deep"]), ("seeds-empty", None), ("seeds-bool", None),
    ("seeds-nan", None), ("roadmap-nowhere", None),
]


def _report_runjson(name: str, content: bytes | None) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        path = ctx.run / "run.json"
        if content is not None:
            path.write_bytes(content)
        else:
            meta = json.loads(path.read_text())
            if name == "seeds-empty":
                meta["seeds"] = []
            elif name == "seeds-bool":
                meta["seeds"] = [True]
            elif name == "seeds-nan":
                meta["seeds"] = [float("nan")]
            else:
                meta["roadmap"] = {"name": "no_such_roadmap", "path": "/no/such/roadmap.toml"}
                meta.pop("roadmap_name", None)
            path.write_text(json.dumps(meta))
        ctx.refused(report(ctx), "run.json")
        path.unlink()
        ctx.ok(train(ctx))
        ctx.done(top1)
    return fn


for _name, _content in REPORT_RUNJSON:
    case(f"report-runjson-{_name}")(_report_runjson(_name, _content))


@case("report-bench-csv-random")
def _bench_random(ctx: Ctx) -> None:
    top1 = ctx.trained()
    (ctx.run / "bench.csv").write_bytes(RANDOM)
    ctx.refused(report(ctx), "bench.csv")
    (ctx.run / "bench.csv").unlink()
    ctx.ok(report(ctx))
    ctx.done(top1)


@case("report-bench-csv-nonfinite")
def _bench_inf(ctx: Ctx) -> None:
    ctx.trained()
    (ctx.run / "bench.csv").write_text(f"step,gmacs,infer_img_s,train_img_s\n{STEP},,inf,nan\n")
    ctx.ok(report(ctx))


@case("report-rundir-is-file")
def _rd_file(ctx: Ctx) -> None:
    ctx.refused(["report", str(ctx.w("run", "x"))], "run")


@case("report-rundir-symlink-loop")
def _rd_loop(ctx: Ctx) -> None:
    os.symlink("loop", ctx.root / "loop")
    ctx.refused(["report", str(ctx.root / "loop")], "loop")


@case("report-rundir-empty")
def _rd_empty(ctx: Ctx) -> None:
    ctx.run.mkdir()
    ctx.refused(report(ctx), "run.json")


@case("report-cwd-deleted")
def _cwd_gone(ctx: Ctx) -> None:
    ctx.trained()
    ctx.ok(report(ctx), hooks=[("cwd-gone", "")])


@case("train-step-folder-is-file")
def _step_file(ctx: Ctx) -> None:
    top1 = ctx.trained()
    shutil.move(ctx.run / STEP, ctx.root / "saved")
    (ctx.run / STEP).write_text("not a folder")
    ctx.refused(train(ctx), STEP, keep=[])
    (ctx.run / STEP).unlink()
    shutil.move(ctx.root / "saved", ctx.run / STEP)
    ctx.ok(train(ctx))
    ctx.done(top1)


# --- 6. OS errors at --out --------------------------------------------------------------------------

OUT_FAULTS: list[tuple[str, Callable[[Ctx], Path], str]] = [
    ("is-file", lambda c: c.w("f", "x"), "/f"),
    ("under-file", lambda c: c.w("f", "x") / "sub", "/f"),
    ("readonly", lambda c: readonly(c.root / "ro"), "/ro"),
    ("readonly-parent", lambda c: readonly(c.root / "ro") / "sub", "/ro"),
    ("sys", lambda c: Path("/sys/modernize-hostile"), "/sys/modernize-hostile"),
    ("proc", lambda c: Path("/proc/modernize-hostile/x"), "/proc/modernize-hostile"),
    ("name-too-long", lambda c: c.root / ("n" * 300), "nnnnnnnnnn"),
    ("path-too-long", lambda c: c.root.joinpath(*["d" * 200] * 25), "dddddddddd"),
    ("symlink-loop", lambda c: (os.symlink("loop", c.root / "loop"), c.root / "loop")[1], "loop"),
]
WORK = {"flops": "*:flops_table", "bench": "*:bench_roadmap", "report": "*:roadmap_figure"}


def _out_case(cmd: str, make: Callable[[Ctx], Path], culprit: str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        bad = make(ctx)
        hooks = [("forbid", WORK[cmd], "the work started before --out was checked")] if cmd in WORK else []
        if cmd == "train":
            ctx.refused(train(ctx, out=bad), culprit, keep=[ctx.root])
            ctx.ok(train(ctx))
            ctx.done(ctx.shard.template()[1])
            return
        if cmd == "report":
            ctx.trained()
            argv, good = report(ctx, None, "--out", str(bad)), report(ctx, None, "--out", str(ctx.root / "rep"))
        elif cmd == "flops":
            argv, good = flops(ctx)[:-1] + [str(bad)], flops(ctx)
        else:
            argv, good = bench(ctx)[:-1] + [str(bad)], bench(ctx)
        ctx.refused(argv, culprit, hooks=hooks, keep=[ctx.root])
        ctx.ok(good)
    return fn


for _cmd in ("flops", "bench", "report", "train"):
    for _id, _make, _cul in OUT_FAULTS:
        case(f"{_cmd}-out-{_id}")(_out_case(_cmd, _make, _cul))


@case("report-out-is-run-json")
def _out_runjson(ctx: Ctx) -> None:
    ctx.trained()
    ctx.refused(report(ctx, None, "--out", str(ctx.run / "run.json")), "run.json")


# --- 7. image-folder data sets -------------------------------------------------------------------------

def _img_case(spoil: Callable[[Ctx, Path], Any], culprit: str | None, repair: Callable[[Ctx, Path], Any] | None = None,
              **kw: Any) -> Callable[[Ctx], None]:
    """A hostile image folder: refused naming the culprit (then, repaired, the same command trains),
    or (culprit None) trained."""
    def fn(ctx: Ctx) -> None:
        root = image_folder(ctx, **kw)
        spoil(ctx, root)
        argv = train(ctx, data=f"imagefolder:{root}")
        if culprit is None:
            ctx.ok(argv)
            ctx.done()
            return
        ctx.refused(argv, culprit, keep=[])
        if repair is not None:
            repair(ctx, root)
            ctx.ok(argv)
            ctx.done()
    return fn


def _replace_png(name: str) -> Callable[[Ctx, Path], None]:
    def fix(ctx: Ctx, root: Path) -> None:
        p = root / "train" / "a" / name
        if p.is_symlink() or p.exists():
            p.unlink()
        p.write_bytes(png_bytes())
    return fix


case("img-class-only-text")(_img_case(lambda c, r: ([p.unlink() for p in (r / "train" / "b").glob("*")],
                                                    (r / "train" / "b" / "notes.txt").write_text("x")),
                                      "b", lambda c, r: [(r / "train" / "b" / f"{i}.png").write_bytes(png_bytes()) for i in range(16)]))
case("img-empty-class")(_img_case(lambda c, r: [p.unlink() for p in (r / "train" / "b").glob("*")], "train/b",
                                  lambda c, r: [(r / "train" / "b" / f"{i}.png").write_bytes(png_bytes()) for i in range(16)]))
case("img-text-named-png")(_img_case(lambda c, r: (r / "train" / "a" / "0.png").write_text("hello\n"), "0.png",
                                     _replace_png("0.png")))
case("img-truncated-png")(_img_case(lambda c, r: (r / "train" / "a" / "0.png").write_bytes(png_bytes((64, 64))[:60]),
                                    "0.png", _replace_png("0.png")))
case("img-zero-bytes")(_img_case(lambda c, r: (r / "train" / "a" / "0.png").write_bytes(b""), "0.png", _replace_png("0.png")))
case("img-bomb")(_img_case(lambda c, r: (r / "train" / "a" / "0.png").write_bytes(bomb_png()), "0.png", _replace_png("0.png")))
case("img-fifo")(_img_case(lambda c, r: ((r / "train" / "a" / "0.png").unlink(), os.mkfifo(r / "train" / "a" / "0.png")),
                           "0.png", _replace_png("0.png")))
case("img-dangling-symlink")(_img_case(lambda c, r: ((r / "train" / "a" / "0.png").unlink(),
                                                     os.symlink("/no/such.png", r / "train" / "a" / "0.png")),
                                       "0.png", _replace_png("0.png")))
case("img-not-utf8-name")(_img_case(lambda c, r: Path(os.fsdecode(bytes(r / "train" / "a") + b"/\xff\xfe.png")).write_bytes(b"junk"),
                                    ".png", lambda c, r: Path(os.fsdecode(bytes(r / "train" / "a") + b"/\xff\xfe.png")).unlink()))
case("img-symlink-loop")(_img_case(lambda c, r: os.symlink(".", r / "train" / "a" / "loop"), "loop",
                                   lambda c, r: (r / "train" / "a" / "loop").unlink()))
case("img-symlink-loops-empty-class")(_img_case(
    lambda c, r: ([p.unlink() for p in (r / "train" / "b").glob("*")], os.symlink(".", r / "train" / "b" / "l1"),
                  os.symlink("..", r / "train" / "b" / "l2")), "train/b",
    lambda c, r: ([(r / "train" / "b" / n).unlink() for n in ("l1", "l2")],
                  [(r / "train" / "b" / f"{i}.png").write_bytes(png_bytes()) for i in range(16)])))
case("img-val-extra-class")(_img_case(lambda c, r: ((r / "val" / "z").mkdir(), (r / "val" / "z" / "0.png").write_bytes(png_bytes())),
                                      "val", lambda c, r: shutil.rmtree(r / "val" / "z")))
case("img-no-val")(_img_case(lambda c, r: shutil.rmtree(r / "val"), "val",
                             lambda c, r: shutil.copytree(r / "train", r / "val")))
case("img-train-files-only")(_img_case(lambda c, r: ([shutil.rmtree(d) for d in (r / "train").iterdir()],
                                                     (r / "train" / "x.png").write_bytes(png_bytes())), "train"))
case("img-one-pixel")(_img_case(lambda c, r: [p.write_bytes(png_bytes((1, 1))) for p in r.rglob("*.png")], None))
case("img-mixed-modes")(_img_case(lambda c, r: [p.write_bytes(png_bytes((16, 16), m, 7)) for p, m in
                                                zip(sorted(r.rglob("*.png")), ["RGBA", "I;16", "P", "1", "RGB", "LA"] * 10)],
                                  None))
@case("img-long-tmpdir")
def _long_tmpdir(ctx: Ctx) -> None:
    """TMPDIR too long for the loader workers' AF_UNIX sockets: a warning, then the images load in
    the main process (the loader used to wait forever for the workers)."""
    tmp = ctx.root / ".tmp" / ("t" * 90)
    tmp.mkdir(parents=True)
    root = image_folder(ctx)
    ctx.ok(train(ctx, data=f"imagefolder:{root}"), env={"TMPDIR": str(tmp)}, warn="TMPDIR")
    ctx.done()


case("img-unicode-classes")(_img_case(lambda c, r: None, None, classes=("クラス", "ß✓")))


# --- 8. signals ----------------------------------------------------------------------------------------

AUG = "modernize.data:BatchAugment.__call__"
SIGNAL_POINTS = {"start": "modernize.cli:_dispatch", "loading": "*:load_data", "training": AUG,
                 "evaluation": "*:evaluate"}


def _signal_case(sig: str, where: str) -> Callable[[Ctx], None]:
    """A stop at a point of a tiny run: exit 130, nothing half-written (a resumable checkpoint when
    training had started), and the same command then finishes with the uninterrupted run's top-1."""
    def fn(ctx: Ctx) -> None:
        top1 = ctx.shard.template()[1]
        ctx.stopped(train(ctx), hooks=[("signal", SIGNAL_POINTS[where], sig, 1)])
        if where in ("training", "evaluation"):
            r = ctx.result()
            if r.get("status") != "running" or not job(ctx, "last.pt").is_file():
                ctx.fail("wrong", f"stopped in {where}: result {r.get('status')!r}, last.pt "
                                  f"{'present' if job(ctx, 'last.pt').is_file() else 'missing'}")
        elif (ctx.run / STEP).exists():
            ctx.fail("wrong", f"stopped at {where}: a job folder was written")
        ctx.ok(train(ctx))
        ctx.done(top1)
    return fn


for _sig in ("SIGINT", "SIGTERM"):
    for _where in SIGNAL_POINTS:
        case(f"signal-{_sig.lower()}-{_where}")(_signal_case(_sig, _where))


@case("signal-sigterm-precise-bn")
def _sig_bn(ctx: Ctx) -> None:
    rec = tiny_recipe(ctx, "bn", precise_bn_batches=1)
    ctx.ok(train(ctx, out=ctx.root / "ref", recipe=rec))
    ref = ctx.result(ctx.root / "ref")["top1"]
    ctx.stopped(train(ctx, recipe=rec), hooks=[("signal", "*:precise_bn", "SIGTERM", 1)])
    ctx.ok(train(ctx, recipe=rec))
    ctx.done(ref)


@case("signal-sigkill-training-then-resume")
def _sig_kill(ctx: Ctx) -> None:
    top1 = ctx.shard.template()[1]
    res = ctx.cli(train(ctx, "--ckpt-every", "1"), hooks=[("signal", AUG, "SIGKILL", 2)])
    if res.rc != -9:
        ctx.fail("fail", f"expected death by SIGKILL, got {res.brief()}")
    ctx.ok(train(ctx, "--ckpt-every", "1"))
    ctx.done(top1)


@case("signal-double-sigint")
def _sig_double(ctx: Ctx) -> None:
    top1 = ctx.shard.template()[1]
    ctx.stopped(train(ctx), hooks=[("signal", AUG, "SIGINT", 1), ("signal", AUG, "SIGINT", 1)])
    ctx.ok(train(ctx))
    ctx.done(top1)


@case("signal-between-jobs")
def _sig_between(ctx: Ctx) -> None:
    ctx.stopped(train(ctx, steps=(STEP, "kernel_7")), hooks=[("after", "*:run_job", "SIGTERM", 1)])
    ctx.ok(train(ctx, steps=(STEP, "kernel_7")))
    ctx.done(ctx.shard.template()[1])
    ctx.done(step="kernel_7")


@case("signal-sigterm-in-report-after-training")
def _sig_report(ctx: Ctx) -> None:
    ctx.stopped(train(ctx), hooks=[("signal", "*:_save", "SIGTERM", 2)])
    ctx.done(ctx.shard.template()[1], report=False)
    ctx.ok(report(ctx))
    ctx.done(ctx.shard.template()[1])


@case("signal-sigint-report")
def _sig_report2(ctx: Ctx) -> None:
    ctx.trained()
    ctx.stopped(report(ctx, None, "--out", str(ctx.root / "rep")), hooks=[("signal", "*:_save", "SIGINT", 3)])
    ctx.ok(report(ctx, None, "--out", str(ctx.root / "rep")))


@case("signal-sigint-flops")
def _sig_flops(ctx: Ctx) -> None:
    ctx.stopped(flops(ctx), hooks=[("signal", "*:count", "SIGINT", 1)])
    if (ctx.root / "flops_out").exists():
        ctx.fail("wrong", "flops stopped before counting, yet wrote flops_out/")
    ctx.ok(flops(ctx))


@case("signal-sigterm-flops")
def _sig_flops_term(ctx: Ctx) -> None:
    ctx.stopped(flops(ctx), hooks=[("signal", "*:count", "SIGTERM", 1)])
    ctx.ok(flops(ctx))


@case("signal-sigint-bench")
def _sig_bench(ctx: Ctx) -> None:
    ctx.stopped(bench(ctx), hooks=[("signal", "*:bench_spec", "SIGINT", 1)])
    ctx.ok(bench(ctx))


@case("signal-sigterm-describe")
def _sig_describe(ctx: Ctx) -> None:
    ctx.stopped(describe(), hooks=[("signal", SIGNAL_POINTS["start"], "SIGTERM", 1)])


@case("signal-sigint-bench-data")
def _sig_bd(ctx: Ctx) -> None:
    ctx.stopped(bench_data(ctx), hooks=[("signal", "*:worker_rate", "SIGINT", 1)])
    left = list((ctx.root / ".tmp").glob("*"))
    if left:
        ctx.fail("outside", f"bench-data stopped, temp files left behind: {left[:3]}")


@case("signal-real-sigint-fresh-process", fresh=True)
def _sig_fresh(ctx: Ctx) -> None:
    """A real Ctrl-C from outside (no hook) to a fresh `python -m modernize.cli train` once it
    has started training; rerun resumes to the same numbers as an uninterrupted run."""
    rec = tiny_recipe(ctx, "longer", epochs=2)
    argv = train(ctx, data="synthetic:512", recipe=rec)
    p = ctx.spawn(argv, fresh=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < TIMEOUT_S + FRESH_STARTUP_S:
        if "run " in (p.out.read_text(errors="replace") if p.out.exists() else ""):
            break
        time.sleep(0.05)
    time.sleep(0.3)
    with contextlib.suppress(ProcessLookupError):
        os.kill(p.pid, signal.SIGINT)
    res = ctx.wait(p)
    ctx._check_basics(res)
    if res.rc not in (130, 0):
        ctx.fail("fail", f"Ctrl-C: expected exit 130, got {res.brief()}")
    ctx.ok(argv, fresh=False)
    ctx.ok(train(ctx, data="synthetic:512", recipe=rec, out=ctx.root / "ref"), fresh=False)
    ctx.done(ctx.result(ctx.root / "ref")["top1"])


# --- 9. concurrent runs on one RUN_DIR -------------------------------------------------------------

def _together(ctx: Ctx, argvs: Sequence[list[str]]) -> list[Res]:
    before = snapshot(ctx.root, skip=_scratch_skip(ctx.root))
    procs = [ctx.spawn(a) for a in argvs]
    results = [ctx.wait(p) for p in procs]
    ctx._check_writes(before, [ctx.run], argvs[0])
    for r in results:
        ctx._check_basics(r)
    return results


@case("concurrent-same-command-two-seeds")
def _conc_same(ctx: Ctx) -> None:
    rs = _together(ctx, [train(ctx, "--seeds", "0", "1")] * 2)
    if [r.rc for r in rs] != [0, 0]:
        ctx.fail("fail", f"two identical trains: exit codes {[r.rc for r in rs]}: {rs[0].last[:120]} | {rs[1].last[:120]}")
    ctx.done(ctx.shard.template()[1])
    ctx.done(seed=1)


@case("concurrent-three-one-job")
def _conc_three(ctx: Ctx) -> None:
    rs = _together(ctx, [train(ctx)] * 3)
    if [r.rc for r in rs] != [0, 0, 0]:
        ctx.fail("fail", f"three identical trains: exit codes {[r.rc for r in rs]}")
    trained = sum(bool(re.search(rf"{STEP} seed 0: done, top1", r.out)) for r in rs)
    if trained != 1:
        ctx.fail("wrong", f"one job trained {trained} times by three processes")
    ctx.done(ctx.shard.template()[1])


@case("concurrent-different-configs")
def _conc_diff(ctx: Ctx) -> None:
    rs = _together(ctx, [train(ctx), train(ctx, recipe=tiny_recipe(ctx, "other", lr=1e-3))])
    codes = sorted(r.rc or 0 for r in rs)
    if codes != [0, 2]:
        ctx.fail("fail", f"two different configs on one RUN_DIR: exit codes {[r.rc for r in rs]} (expected one 0, one 2)")
    loser = next(r for r in rs if r.rc == 2)
    one_line_error(ctx, loser, ["run.json", "seed0"])
    ctx.done()


# --- 10. the process's own surroundings ------------------------------------------------------------

@case("stdout-closed-pipe")
def _closed_pipe(ctx: Ctx) -> None:
    res = ctx.cli(["describe", "--no-counts"], stdout="closed-pipe")
    if res.rc == 1 or "Exception ignored" in res.err or len(res.lines) > 1:
        ctx.fail("fail", f"stdout closed early: {res.brief()} ({res.err[-200:]!r})")


@case("stdout-dev-full")
def _dev_full(ctx: Ctx) -> None:
    res = ctx.cli(flops(ctx), stdout="devfull")
    one_line_error(ctx, res, ["No space left", "stdout"])
    if "Exception ignored" in res.err:
        ctx.fail("fail", f"stdout full: {res.err[-200:]!r}")


@case("out-not-utf8-bytes")
def _not_utf8_out(ctx: Ctx) -> None:
    out = ctx.root / os.fsdecode(b"o\xff\xfe")
    res = ctx.ok(flops(ctx)[:-1] + [str(out)])
    if not (out / "flops.csv").is_file():
        ctx.fail("wrong", f"flops exited 0 without writing {out}/flops.csv ({res.brief()})")


@case("python-m-modernize", fresh=True)
def _python_m(ctx: Ctx) -> None:
    ctx.ok(describe(), fresh=True, module="modernize")


@case("fresh-process-bad-flag", fresh=True)
def _fresh_flag(ctx: Ctx) -> None:
    ctx.refused(["flops", "--resolution", "nan"], "--resolution", fresh=True)


def selftest(base: Path) -> list[str]:
    """The battery's checks catch what they claim: a traceback, a hang, a wrong exit code, a write
    outside the case, a write outside the allowed paths. Returns what was missed."""
    def run(fn: Callable[[Ctx], Any], where: str) -> Outcome:
        return run_case(Case("selftest", fn), base / where)

    got = {
        "traceback": run(lambda ctx: ctx.ok(["describe", "--no-counts"], hooks=[("raise", "modernize.cli:_dispatch")]),
                         "a"),
        "hang": run(lambda ctx: ctx.cli(["describe", "--no-counts"], timeout=2,
                                        hooks=[("sleep", "modernize.cli:_dispatch", 30)]), "b"),
        "fail": run(lambda ctx: ctx.refused(["describe", "--no-counts"], "x"), "c"),
        "outside": run(lambda ctx: (ctx.case_dir / "sentinel.txt").write_text("touched"), "d"),
        "outside-allowed": run(lambda ctx: ctx.cli(["flops", str(ctx.w("mini.toml", MINI)), "--resolution", "32",
                                                    "--out", str(ctx.root / "o")], allowed=[]), "e"),
    }
    missed = [k for k, o in got.items() if o.ok or o.kind != k.split("-")[0]]
    if got["traceback"].tally.tracebacks != 1 or got["hang"].tally.hangs != 1 or got["outside"].tally.outside != 1:
        missed.append("tally")
    if "expected exit 2" not in got["fail"].reason:
        missed.append("fail reason")
    return missed


# --- the server: tests/test_battery.py's worker -------------------------------------------------------------

CASE_IDS = {c.id: c for c in CASES}


def _outcome_json(o: Outcome) -> str:
    return json.dumps({"id": o.id, "ok": o.ok, "kind": o.kind, "reason": o.reason, "wall": o.wall,
                       "tally": o.tally.__dict__, "log": o.log})


def serve(base: Path) -> int:
    """Case ids on stdin, one JSON outcome per line on stdout, one trained template for them all.
    A fresh interpreter that never ran a torch op forks the commands (a pytest process may have
    run some: a fork of a process with OpenMP threads can hang); pytest selects, shards
    (pytest-xdist: one server per worker) and reports."""
    preload()
    _limit_memory()
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    fresh = os.environ.get("HOSTILE_FRESH") == "1"
    shard = Shard(base, fresh)
    for line in sys.stdin:
        cid = line.strip()
        if cid == "--selftest":
            missed = selftest(base / "_selftest")
            print(json.dumps({"id": cid, "ok": not missed, "kind": "selftest", "reason": f"missed {missed}",
                              "wall": 0.0, "tally": {}, "log": []}), flush=True)
        elif cid:
            print(_outcome_json(run_case(CASE_IDS[cid], base, shard, fresh=fresh)), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``--serve BASE`` (the battery's worker) or ``--child JSON`` (a fresh interpreter's command
    with hooks); the battery itself runs under pytest (the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "--child":
        spec = json.loads(args[1])
        _env_defaults()
        _all_modernize_modules()
        return child_main(spec["argv"], spec["hooks"])
    if len(args) == 2 and args[0] == "--serve":
        return serve(Path(args[1]))
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
