"""Where a result came from: the code version and the machine, recorded in each job's
``result.json`` by the process that trains it (and in ``run.json`` for the last command that
wrote it), so that results made by different code or on different machines can be told apart
(``compare``); a later command that trains nothing does not relabel them."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from . import __version__
from .paths import REPO_ROOT


def _git(args: list[str], root: Path) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """The package version, and the git commit of the checkout it runs from (None for an
    installed wheel or without git); ``dirty``: tracked files differ from that commit."""
    commit = dirty = None
    if REPO_ROOT is not None and (REPO_ROOT / ".git").exists():
        commit = _git(["rev-parse", "HEAD"], REPO_ROOT)
        status = _git(["status", "--porcelain", "--untracked-files=no"], REPO_ROOT) if commit else None
        dirty = None if status is None else bool(status)
    return {"package": __version__, "commit": commit, "dirty": dirty}


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` shows it (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model Name", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine(gpu: str | None = None) -> dict[str, Any]:
    """The machine a run trained on: CPU model and logical cores, OS, Python, and the GPU's name."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "gpu": gpu}


def describe_code(code: Any) -> str:
    """``0.1.0 @ 1a2b3c4d (dirty)`` from a run.json ``code`` record; "unknown" for old run folders."""
    if not isinstance(code, dict):
        return "unknown (not recorded)"
    text = str(code.get("package") or "?")
    if code.get("commit"):
        text += f" @ {str(code['commit'])[:10]}" + (" (dirty)" if code.get("dirty") else "")
    return text


def describe_machine(info: Any) -> str:
    """``AMD EPYC 7B13, 2 cores`` (+ GPU) from a run.json ``machine`` record."""
    if not isinstance(info, dict):
        return "unknown (not recorded)"
    text = f"{info.get('cpu') or '?'}, {info.get('cores') or '?'} cores"
    return text + (f", GPU {info['gpu']}" if info.get("gpu") else "")


def describe_jobs(records: list[Any], key: str, fallback: Any) -> str:
    """The code versions (``key="code"``) or machines (``"machine"``) the jobs' result.json
    records, distinct values joined with "; " in first-seen order. Jobs trained before results
    recorded it fall back to run.json's record (``fallback``), said so."""
    describe = describe_code if key == "code" else describe_machine
    seen = [describe(r[key]) for r in records if isinstance(r, dict) and isinstance(r.get(key), dict)]
    if len(seen) < len(records) or not records:
        seen.append(f"{describe(fallback)} (run.json; jobs do not record it)")
    return "; ".join(dict.fromkeys(seen))


__all__ = ["code_version", "cpu_model", "describe_code", "describe_jobs", "describe_machine", "machine"]
