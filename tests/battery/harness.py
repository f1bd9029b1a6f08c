"""The hostile battery's harness: bad flags, edited and corrupt files, OS errors, hostile image
folders, signals, concurrent runs and ``--force``, across every command of the CLI. The cases live
in ``cases_*.py`` beside this file; ``tests/test_battery.py`` runs each as one pytest test::

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

Child processes: each CLI call is ``os.fork()`` of the battery's server (``server.py``), which
imported torch and modernize once (a fresh interpreter costs 10-20 s of imports on a loaded 2-core
machine; forked, a case costs about a second) and never runs a torch op itself. The child sets up
its own session, working folder, HOME/TMPDIR (inside the case's root), UTF-8 stdio, a memory
limit, and calls ``modernize.cli.main(argv)`` exactly as ``python -m modernize.cli`` does; an
uncaught exception prints its traceback and exits 1, like the interpreter. ``HOSTILE_FRESH=1``
(and the cases marked fresh) run a new interpreter instead. Signals at a given point (start, data
loading, a training iteration, evaluation) are sent by the child to itself from a hook wrapped
around the function that marks that point, so they land at the same place on every run.

Cost: a case trains at most the tiny recipe (one epoch of 32 synthetic 16-px images, two
iterations) on a 1/8-width proxy of two steps; a case that needs a finished run copies the one
trained run of its server (``Ctx.trained``). ``train``'s closing report draws no pixels
(``cheap-figures``: ``figures.save`` writes a placeholder; the tables, the page and every
figure's data are still computed): the ``report`` commands of the cases render the figures for real.
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

REPO = Path(__file__).resolve().parents[2]
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
    if kind == "cheap-figures":  # train's closing report: every figure built, none rendered to pixels
        import modernize.report.figures as figures

        figures.save = lambda fig, path, fmt: Path(path).write_bytes(b"cheap-figures placeholder\n")
        return
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
        cmd = [sys.executable, "-m", "tests.battery.server", "--child", json.dumps({"argv": argv, "hooks": hooks})]
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
        if argv[:1] == ["train"] and not any(str(x).endswith(":save") for hk in hooks for x in hk):
            hooks = [*hooks, ("cheap-figures", "")]
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
                                       f"{row['top1_mean'].tolist() if not row.empty else 'absent'}, "
                                       f"the results' {mean}")
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
    (default RUN_DIR/report); flops and bench their --out; explore its --out and --store; compare
    its --out (default FIRST_RUN_DIR/compare) or the --rerender folder; describe and bench-data nothing."""
    def p(x: str) -> Path:
        return Path(os.path.normpath(root / x))

    cmd = argv[0] if argv else ""
    out = _flag(argv, "--out")
    if cmd == "train":
        return [p(out or "runs/train")]
    if cmd == "report":
        pos = [a for a in argv[1:] if not a.startswith("-")]
        run = pos[0] if pos and pos[0] != out else "."
        if "--page-only" in argv:  # RUN_DIR is the report folder itself
            return [p(run)]
        return [p(out) if out else p(run) / "report"]
    if cmd in ("flops", "bench"):
        return [p(out)] if out else []
    if cmd == "explore":
        return [p(out or "runs/explore"), p(_flag(argv, "--store") or "runs/explore-store")]
    if cmd == "compare":
        rerender = _flag(argv, "--rerender")
        pos = [a for a in argv[1:] if not a.startswith("-") and a not in (out, rerender)]
        return [p(rerender)] if rerender else [p(out) if out else p(pos[0]) / "compare"] if pos else []
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
        why = "" if self.ok else f": [{self.kind}] {self.reason}"
        return f"{'PASS' if self.ok else 'FAIL'} {self.id} ({self.wall:.1f} s){why}"


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


def C() -> Any:
    """tests/conftest.py, imported on first use like ``R()`` (it imports torch and modernize)."""
    import tests.conftest as shared

    return shared


def tiny_recipe(ctx: Ctx, name: str = "tiny", extra: str = "", **kw: Any) -> Path:
    return C().write_recipe(ctx.root, name, extra, **kw)


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
    vals = {k: json.dumps(v) for k, v in C().TINY.items()}
    for k, v in over.items():
        if v is None:
            vals.pop(k, None)
        else:
            vals[k] = v
    return "\n".join(f"{k} = {v}" for k, v in vals.items()) + "\n"


def bad_recipe(ctx: Ctx, sub: bool = True, extra: str = "", **over: str | None) -> Path:
    return ctx.w("bad.toml", _tiny_lines(**over) + extra + (C().TINY_SUBSTITUTE if sub else ""))


def refuse_on_trained(ctx: Ctx, argv: Callable[[Ctx], list[str]], culprit: str | Sequence[str],
                      fix: Callable[[Ctx], list[str]] | None = None, **kw: Any) -> None:
    """On a trained run folder: the hostile command is refused and changes nothing; the correct
    command then finds the finished job (same top-1)."""
    top1 = ctx.trained()
    ctx.refused(argv(ctx), culprit, **kw)
    ctx.ok((fix or train)(ctx))
    ctx.done(top1)



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
