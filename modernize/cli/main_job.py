"""``python run_ablation.py`` with no command: the main job (see README)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..paths import reference_dir, runs_dir
from ..request import Execution, RunRequest
from ..roadmap import load_roadmap
from .flops import print_flops
from .report import print_report

MAIN_JOB = {"roadmap": None, "data": "fashion-mnist", "recipe": "quick", "seeds": [0, 1]}
"""The recipe names its proxy scale (its ``proxy`` key), chosen by the proxy study."""


def run_main_job(run_dir: Path | None = None, out: Path | None = None, reference: Path | None = None) -> int:
    """Every step of the default roadmap for two seeds, the quick recipe at its proxy scale,
    Fashion-MNIST from the Debian package's files, one job per core side by side (local workers,
    one torch thread each), into ``runs/main`` (default); then the FLOP table and the report
    into ``runs/main/report/`` (default), and the reproduction check against the committed
    reference ``reports/<roadmap>/`` when it exists. Nothing under ``reports/`` is written: the
    reference changes only by ``report runs/main --out reports/<roadmap>`` (see docs).
    Rerunning resumes (finished jobs are skipped)."""
    from ..train import train_roadmap

    # One job per core, one thread each: two OpenMP threads on one small model wait on each other;
    # two independent jobs never do. MODERNIZE_WORKERS overrides the count.
    workers = max(1, int(os.environ.get("MODERNIZE_WORKERS", str(len(os.sched_getaffinity(0))))))
    start = time.perf_counter()
    run_dir = run_dir if run_dir is not None else runs_dir() / "main"
    roadmap = load_roadmap(MAIN_JOB["roadmap"])
    request = RunRequest(roadmap=roadmap, data=MAIN_JOB["data"], recipe=MAIN_JOB["recipe"], seeds=MAIN_JOB["seeds"],
                         out=run_dir)
    train_roadmap(request, Execution(device="cpu", workers=workers, threads=1))
    out = out if out is not None else run_dir / "report"
    reference = reference if reference is not None else reference_dir(roadmap.name)
    print_flops(None, out, 224)
    print_report(run_dir, out, reference=reference if reference.is_dir() else None)
    if not reference.is_dir():
        print(f"reproduction: no reference report at {reference}; check skipped")
    print(f"main job finished in {time.perf_counter() - start:.0f} s (report under {out})")
    return 0
