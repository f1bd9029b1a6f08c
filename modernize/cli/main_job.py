"""``python run_ablation.py`` with no command: the main job (see README)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..paths import default_out, work_root
from ..proxy import CPU_PROXY
from ..roadmap import load_roadmap
from .flops import print_flops
from .report import print_report

MAIN_JOB = {"roadmap": None, "data": "fashion-mnist", "recipe": "quick", "seeds": [0]}


def run_main_job(run_dir: Path | None = None, out: Path | None = None) -> int:
    """Every step of the default roadmap, quick recipe, proxy scale, Fashion-MNIST from the
    Debian package's files, into ``runs/main`` (default); then the FLOP table and the report
    into ``reports/<roadmap>/`` (default). Rerunning resumes (finished steps are skipped)."""
    import torch

    from ..train import train_roadmap

    # One thread unless the user says otherwise: on a shared 2-core machine two OpenMP threads
    # wait on each other and small ops run up to 10x slower (measured); one thread never does.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.perf_counter()
    run_dir = run_dir if run_dir is not None else work_root() / "runs" / "main"
    roadmap = load_roadmap(MAIN_JOB["roadmap"])
    train_roadmap(roadmap, data=MAIN_JOB["data"], recipe=MAIN_JOB["recipe"], seeds=MAIN_JOB["seeds"],
                  out=run_dir, device="cpu", proxy=CPU_PROXY)
    out = out if out is not None else default_out(roadmap.name)
    print_flops(None, out, 224)
    print_report(run_dir, out)
    print(f"main job finished in {time.perf_counter() - start:.0f} s (report under {out})")
    return 0
