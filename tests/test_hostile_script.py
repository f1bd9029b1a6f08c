"""scripts/hostile.py, the hostile battery of issue 11, is itself tested: a handful of its cases run
through the script in a fresh interpreter (it forks its commands from its own process, which must
not have run torch ops: a fork of a process with OpenMP threads can hang), and its checks catch
what they claim to catch (``--selftest``: a traceback, a hang, a wrong exit code, a write outside)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "hostile.py"


def _load() -> ModuleType:
    module = load_script("hostile")
    module.preload()
    return module


def test_at_least_100_distinct_cases_over_every_command() -> None:
    h = _load()
    ids = [c.id for c in h.CASES]
    assert len(ids) == len(set(ids)) >= 100
    for word in ("flops", "train", "report", "describe", "bench-", "bench-data", "signal", "concurrent", "force",
                 "img-", "recipe-", "roadmap-", "last-pt", "result-json", "config-json", "log-csv", "out-"):
        assert any(word in i for i in ids), word


CASES_RUN = ["flops-resolution-nan", "train-flag-seeds-huge", "recipe-file-deep-nesting", "report-runjson-seeds-empty",
             "signal-sigterm-training", "img-symlink-loop", "flops-out-readonly", "result-json-top1-infinity",
             "img-long-tmpdir", "stdout-closed-pipe", "stdout-dev-full", "out-not-utf8-bytes", "last-pt-wrong-model"]


def _fresh(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The battery forks its commands from its own process, which must not have run a torch op
    (a fork of a process with OpenMP threads can hang): never from this pytest process."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=SCRIPT.parent.parent, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_cases_pass(tmp_path: Path) -> None:
    proc = _fresh([a for cid in CASES_RUN for a in ("-k", cid)] + ["--base", str(tmp_path)])
    passed = {ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("PASS ")}
    assert proc.returncode == 0 and set(CASES_RUN) <= passed, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_checks_catch_what_they_claim(tmp_path: Path) -> None:
    proc = _fresh(["--selftest", "--base", str(tmp_path)])
    assert proc.returncode == 0 and "every check caught" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
