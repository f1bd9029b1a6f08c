"""The hostile battery (scripts/hostile.py's cases, issue 11) as pytest tests, one per case.

pytest selects (``-k``, ``-m "not slow"``), shards (pytest-xdist) and reports; the script keeps
the cases and their checks. Each worker starts one ``python scripts/hostile.py --serve BASE``:
a fresh interpreter that imports torch and modernize once and forks every command from there
(this process may have run torch ops, after which a fork can hang on OpenMP's threads).

Every case is marked slow (out of the quick loop). The cases that train nothing, and a sample of
those that train (``TRAINING_IN_CI``), run in every full run; the other training cases (about
two thirds of the battery, far longer than the rest of the suite on 2 cores) run with
``HOSTILE_ALL=1``::

    python -m pytest tests/test_battery.py                   # the fast part and the sample
    HOSTILE_ALL=1 python -m pytest tests/test_battery.py     # every case
"""

from __future__ import annotations

import inspect
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, load_script

SCRIPT = ROOT / "scripts" / "hostile.py"
CASE_TIMEOUT_S = 900.0
"""One case's limit, its commands' own 60 s hang checks and the template's training included."""

hostile = load_script("hostile")


def trains(case: Any) -> bool:
    """Does the case train (``train(...)``) or copy the trained run (``ctx.trained()``,
    ``refuse_on_trained``)? Read from its code, so a new case is marked without a list."""
    try:
        return "train" in inspect.getsource(case.fn)
    except (OSError, TypeError):
        return True


TRAINING_IN_CI = ("train-flag-seeds-huge", "recipe-file-deep-nesting", "report-runjson-seeds-empty",
                  "signal-sigterm-training", "result-json-top1-infinity", "result-json-top1-abc",
                  "last-pt-wrong-model", "recipe-file-substitute-datetime", "recipe-lr-4")
"""Training cases that run in every full run (the rest with ``HOSTILE_ALL=1``)."""
ALL = os.environ.get("HOSTILE_ALL") == "1"
_ONLY_ALL = pytest.mark.skipif(not ALL, reason="a training case of the battery: HOSTILE_ALL=1 runs it")


def _marks(case: Any) -> list[pytest.MarkDecorator]:
    if not trains(case):
        return [pytest.mark.slow]
    return [pytest.mark.slow, pytest.mark.trains] + ([] if case.id in TRAINING_IN_CI else [_ONLY_ALL])


CASES = [pytest.param(c.id, id=c.id, marks=_marks(c)) for c in hostile.CASES]


class Server:
    """The worker's ``hostile.py --serve``: one case id in, one JSON outcome out."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, str(SCRIPT), "--serve", str(self.base)], cwd=ROOT,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
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
    server = Server(tmp_path_factory.mktemp("battery"))
    yield server
    server.close()


@pytest.mark.parametrize("case_id", CASES)
def test_case(case_id: str, battery: Server) -> None:
    out = battery.run(case_id)
    assert out["ok"], f"[{out['kind']}] {out['reason']}\n" + "\n".join(out["log"][-4:])


@pytest.mark.slow
def test_checks_catch_what_they_claim(battery: Server) -> None:
    """The battery's own checks catch a traceback, a hang, a wrong exit code and writes outside."""
    out = battery.run("--selftest")
    assert out["ok"], out["reason"]
