"""The hostile battery (tests/battery/: its harness and its cases, issue 11 and 28) as pytest tests,
one per case; every case runs in the default run (``python -m pytest``, what ``.ci/run`` runs).

pytest selects (``-k``, ``-m``), shards (pytest-xdist) and reports; the battery keeps the cases and
their checks. Each worker starts one ``python -m tests.battery.server --serve BASE``: a fresh
interpreter that imports torch and modernize once and forks every command from there (this
process may have run torch ops, after which a fork can hang on OpenMP's threads).

Every case is marked ``slow`` (the battery as a whole takes minutes on 2 cores: out of the quick
loop ``-m "not slow"``), and those that train (or copy the trained run) ``trains``::

    python -m pytest tests/test_battery.py                    # every case
    python -m pytest tests/test_battery.py -m "not trains"    # the cases that train nothing
"""

from __future__ import annotations

import inspect
import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .battery import server
from .conftest import ROOT

CASE_TIMEOUT_S = 900.0
"""One case's limit, its commands' own 60 s hang checks and the template's training included."""


def trains(case: Any) -> bool:
    """Does the case train (``train(...)``) or copy the trained run (``ctx.trained()``,
    ``refuse_on_trained``)? Read from its code, so a new case is marked without a list."""
    try:
        return "train" in inspect.getsource(case.fn)
    except (OSError, TypeError):
        return True


CASES = [pytest.param(c.id, id=c.id, marks=[pytest.mark.slow] + ([pytest.mark.trains] if trains(c) else []))
         for c in server.CASES]


class Server:
    """The worker's ``tests.battery.server --serve``: one case id in, one JSON outcome out."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.battery.server", "--serve", str(self.base)],
                                         cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         bufsize=1)
        return self.proc

    def run(self, case_id: str) -> dict[str, Any]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(case_id + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + CASE_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            if select.select([proc.stdout], [], [], left)[0]:
                line = proc.stdout.readline()
                if not line:
                    pytest.fail(f"{case_id}: the battery's server ended (exit {proc.wait()})")
                if line.startswith("{"):
                    return json.loads(line)
        self.close()  # the next case starts a new server
        pytest.fail(f"{case_id}: no outcome after {CASE_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def battery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("battery"))
    yield srv
    srv.close()


@pytest.mark.parametrize("case_id", CASES)
def test_case(case_id: str, battery: Server) -> None:
    out = battery.run(case_id)
    assert out["ok"], f"[{out['kind']}] {out['reason']}\n" + "\n".join(out["log"][-4:])


@pytest.mark.slow
def test_checks_catch_what_they_claim(battery: Server) -> None:
    """The battery's own checks catch a traceback, a hang, a wrong exit code and writes outside."""
    out = battery.run("--selftest")
    assert out["ok"], out["reason"]


def test_many_distinct_cases_over_every_command() -> None:
    ids = [c.id for c in server.CASES]
    assert len(ids) == len(set(ids)) >= 300
    for word in ("flops", "train", "report", "describe", "bench-", "bench-data", "signal", "concurrent", "force",
                 "img-", "recipe-", "roadmap-", "last-pt", "result-json", "config-json", "log-csv", "out-",
                 "imports-", "plan-"):
        assert any(word in i for i in ids), word


def test_every_case_is_a_test_none_skipped_and_training_cases_marked() -> None:
    assert [p.values[0] for p in CASES] == [c.id for c in server.CASES]
    marks = {p.values[0]: {m.name for m in p.marks} for p in CASES}
    assert all(m <= {"slow", "trains"} and "slow" in m for m in marks.values())  # no skip, no HOSTILE_ALL
    trained = {i for i, m in marks.items() if "trains" in m}
    assert {"signal-sigterm-training", "recipe-epochs-1", "result-json-top1-abc", "config-json-deleted"} <= trained
    assert not ({"flops-resolution-nan", "roadmap-from-list", "roadmap-paper-row-table", "describe-roadmap-missing"}
               & trained)
