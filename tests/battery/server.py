"""The battery's server, ``python -m tests.battery.server --serve BASE``: tests/test_battery.py's
worker (one per pytest-xdist worker). A fresh interpreter that never runs a torch op itself, so it
can fork every command of the cases (a pytest process may have run some: a fork of a process with
OpenMP threads can hang). ``--child JSON`` is a fresh interpreter's command with hooks."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import cases_inputs, cases_outputs, cases_process, cases_runfolder, cases_user  # noqa: F401  (they register the cases)
from .harness import (
    CASES,
    Outcome,
    Shard,
    _all_modernize_modules,
    _env_defaults,
    _limit_memory,
    child_main,
    preload,
    run_case,
    selftest,
)

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
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
