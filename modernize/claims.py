"""Job claims: any number of ``train`` processes, on one machine or many sharing a file
system, can work on one run folder; each (step, seed) job is trained by one of them at a time.

A claim is ``<job dir>/claim.json``, created with ``O_CREAT | O_EXCL`` (atomic on local and
NFSv3+ file systems), holding the owner's host, pid, start time and a random token. The owner
refreshes the file's mtime every ``timeout / 5`` seconds from a daemon thread (the heartbeat).
A claim is *stale* when its owner is a dead pid on this host, or when its heartbeat is older
than ``timeout`` seconds (another host, or a hung owner). Taking over a stale claim renames it
aside first (``rename`` is atomic: of two processes racing, one wins), then creates a new one.

Why not ``filelock``: a lock held by a process on another machine is invisible to us when it
dies; a heartbeat is what tells a dead owner from a slow one across hosts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import guard_folder

CLAIM_FILE = "claim.json"
MOVED_HINT = "; the moved folder resumes where it stopped: rerun the command with --out at its new place"
MIN_TIMEOUT_S = 5.0
"""The shortest claim timeout: the heartbeat (every ``timeout / 5``) must refresh a claim well
within it even on a loaded machine, or a live owner's job is taken over and trained twice."""
DEFAULT_TIMEOUT_S = 300.0
"""A claim whose heartbeat is older than this is taken over (a checkpoint or an epoch of the
paper recipe on one GPU never blocks the heartbeat thread: it runs beside the training)."""


def check_timeout(timeout: float) -> None:
    """A ``ConfigError`` for a claim timeout the heartbeat could not keep alive."""
    from .errors import ConfigError

    if not (math.isfinite(timeout) and timeout >= MIN_TIMEOUT_S):
        raise ConfigError(f"--claim-timeout: at least {MIN_TIMEOUT_S:g} seconds, got {timeout:g} (a claim is "
                          f"refreshed every timeout / 5 s; a shorter timeout lets a second process take over a "
                          f"job whose owner is alive)")


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process of this host. A zombie is not: a SIGKILLed worker
    stays one until its parent reaps it (the parent may be waiting on another worker, and a
    container's PID 1 may never reap an orphan), and its claim must be taken over at once."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs (macOS): os.kill's answer stands
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]  # the state follows the name "(comm)"


@dataclass(frozen=True)
class ClaimInfo:
    """What a claim file says about its owner, and how old its heartbeat is."""

    host: str
    pid: int
    started: float
    token: str
    age_s: float

    def stale(self, timeout: float) -> bool:
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return True
        return self.age_s > timeout

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, heartbeat {self.age_s:.0f} s ago"


def read_claim(job_dir: Path) -> ClaimInfo | None:
    """The current claim of a job, or None (no claim, or one being written / unreadable)."""
    path = job_dir / CLAIM_FILE
    try:
        raw = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
        return ClaimInfo(host=str(raw["host"]), pid=int(raw["pid"]), started=float(raw["started"]),
                         token=str(raw["token"]), age_s=max(0.0, age))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Claim:
    """An owned claim; ``release()`` (or leaving the ``with`` block) removes it."""

    def __init__(self, job_dir: Path, token: str, timeout: float) -> None:
        self.path = job_dir / CLAIM_FILE
        self.token = token
        self.lost = False
        # The job folder may not move while owned: a write into it would re-create it under the old name.
        self._guard = contextlib.ExitStack()
        self._guard.enter_context(guard_folder(job_dir, MOVED_HINT))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(timeout / 5,), daemon=True)
        self._thread.start()

    def _owned(self) -> bool:
        info = read_claim(self.path.parent)
        return info is not None and info.token == self.token

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                if not self._owned():
                    self.lost = True
                    return
                os.utime(self.path)
            except OSError:
                self.lost = True
                return

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._guard.close()
        with contextlib.suppress(OSError):
            if self._owned():
                self.path.unlink()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def try_claim(job_dir: Path, *, timeout: float = DEFAULT_TIMEOUT_S) -> Claim | ClaimInfo:
    """Claim a job: a ``Claim`` when this process now owns it, else the live owner's
    ``ClaimInfo``. A stale claim is removed and taken over."""
    job_dir.mkdir(parents=True, exist_ok=True)
    path = job_dir / CLAIM_FILE
    for _ in range(5):
        token = secrets.token_hex(8)
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                           "token": token}).encode()
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = read_claim(job_dir)
            if info is None:  # being written right now, or garbage: garbage ages out like a dead owner
                try:
                    age = time.time() - path.stat().st_mtime
                except OSError:
                    continue
                if age <= min(timeout, 10.0):
                    time.sleep(0.05)
                    continue
            elif not info.stale(timeout):
                return info
            aside = path.with_name(f"{CLAIM_FILE}.stale-{token}")
            with contextlib.suppress(OSError):  # of racing processes one wins the rename; the rest retry
                os.rename(path, aside)
                aside.unlink()
            continue
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        return Claim(job_dir, token, timeout)
    info = read_claim(job_dir)
    if info is not None:
        return info
    raise OSError(f"{path}: could not claim the job (claim file keeps changing)")


__all__ = ["CLAIM_FILE", "DEFAULT_TIMEOUT_S", "MIN_TIMEOUT_S", "Claim", "ClaimInfo", "check_timeout", "read_claim",
           "try_claim"]
