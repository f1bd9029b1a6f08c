"""``run_ablation.py explore``: the paper's design process on your data (docs/explore.md)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..files import check_out_path
from ..paths import runs_dir
from ..proxy import PROXIES
from ..request import Execution, RunRequest
from .argtypes import Extend, add_roadmap_argument, int_between, nonneg_int, number, positive_int, positive_number, seed
from .train import proxy_from_args

if TYPE_CHECKING:
    from ..explore import Setup

DEFAULT_START = "recipe"


def _setup(args: argparse.Namespace) -> Setup:
    from ..explore import Setup, from_roadmap, load_candidates
    from ..explore.execute import QUIET
    from ..launch import SlurmOptions
    from ..roadmap import load_roadmap

    roadmap = load_roadmap(args.roadmap)
    start_name = args.start or (DEFAULT_START if DEFAULT_START in roadmap.names else roadmap.names[0])
    if start_name not in roadmap.names:
        raise ConfigError(f"--start {start_name}: no such step in roadmap '{roadmap.name}' "
                          f"(valid: {', '.join(roadmap.names)})")
    start = roadmap[start_name]
    cands = load_candidates(Path(args.candidates)) if args.candidates else from_roadmap(roadmap, start)
    slurm = None
    if args.launcher == "slurm":
        if args.workers != 1:
            raise ConfigError("--workers is for local runs; with --launcher slurm each job is its own array task")
        slurm = SlurmOptions(partition=args.partition, gpus_per_job=args.gpus_per_job,
                             nodes_per_job=args.nodes_per_job, array_parallelism=args.array_parallelism,
                             time_min=args.time,
                             cluster="local" if os.environ.get("MODERNIZE_SUBMITIT_LOCAL") else None)
    store = Path(args.store) if args.store else runs_dir() / "explore-store"
    check_out_path(store)
    request = RunRequest(out=store, data=args.data, recipe=args.recipe, seeds=tuple(dict.fromkeys(args.seeds)),
                         proxy=proxy_from_args(args), accum_steps=args.accum_steps)
    execution = dataclasses.replace(QUIET, device=args.device, workers=args.workers, threads=args.threads or None,
                                    claim_timeout=args.claim_timeout)
    return Setup(roadmap=roadmap, start=start, candidates=cands, request=request, execution=execution, slurm=slurm)


def cmd_explore(args: argparse.Namespace) -> int:
    from ..explore import FLOPS_SLACK, Budget, Rule, check_outputs, plan_explore, run_explore, start_gmacs

    out = Path(args.out) if args.out else runs_dir() / "explore"
    check_out_path(out)
    if args.max_gmacs is not None and args.rule != "flops":
        raise ConfigError(f"--max-gmacs {args.max_gmacs:g}: is the budget of --rule flops; with --rule {args.rule} "
                          "it would be ignored (add --rule flops, or drop --max-gmacs)")
    setup = _setup(args)
    max_gmacs = args.max_gmacs
    if args.rule == "flops" and max_gmacs is None:
        max_gmacs = start_gmacs(setup) * FLOPS_SLACK
        print(f"--rule flops: GMACs budget {max_gmacs:.4g} (the start's x {FLOPS_SLACK})")
    rule = Rule(args.rule, max_gmacs if args.rule == "flops" else None)
    budget = Budget(args.max_rounds, args.max_jobs)
    if args.plan:
        check_outputs(setup, out)  # what the run would refuse, the plan refuses
        for line in plan_explore(setup, rule, budget):
            print(line)
        return 0
    result = run_explore(setup, rule, budget, out)
    s = result.search
    path = " -> ".join([setup.start.name] + [
        f"{t.alternative} ({'significant' if t.significant else 'not significant'})" for t in s.path])
    print(f"explore: {path}")
    print(f"stopped: {s.stop}")
    print(f"{len(s.rounds)} round(s), {s.jobs} job(s) used: {result.trained} trained now, {result.reused} reused; "
          f"{result.wall_s:.0f} s")
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0


def add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="the paper's process on your data: try each change, keep what helps, repeat",
                       description="From a start step, each round trains every candidate change whose "
                                   "preconditions hold (through train's job queue: claims, --workers, "
                                   "--launcher slurm, resume), adopts at most one by --rule, and repeats until "
                                   "nothing is adopted or the budget is spent. A spec trained before under the "
                                   "same recipe, data, proxy and seed is reused from the store, never retrained. "
                                   "Writes explore.csv, explore.md, roadmap.toml, explore.png and index.html.")
    add_roadmap_argument(p)
    p.add_argument("--start", default=None, help=f"the roadmap step to start from (default: {DEFAULT_START})")
    p.add_argument("--candidates", default=None, metavar="FILE",
                   help="a TOML file of candidates (default: the roadmap's steps after the start)")
    p.add_argument("--rule", choices=["paper", "strict", "flops"], default="paper",
                   help="paper: best mean gain; strict: best gain whose lower 95%% bound is > 0; flops: best "
                        "mean gain within --max-gmacs (default paper)")
    p.add_argument("--max-gmacs", type=positive_number, default=None,
                   help="the flops rule's budget in GMACs per image as trained (default: the start's x 1.1)")
    p.add_argument("--max-rounds", type=positive_int, default=None, help="stop after this many rounds")
    p.add_argument("--max-jobs", type=positive_int, default=None,
                   help="stop before a round that would take the explore past this many (spec, seed) jobs")
    p.add_argument("--data", default=RunRequest.data,
                   help="fashion-mnist[:DIR] | cifar10[:ROOT] | cifar100[:ROOT] | imagefolder:PATH | synthetic[:N]")
    p.add_argument("--recipe", default=None, help="recipe name or .toml path (default: the roadmap's recipe)")
    p.add_argument("--seeds", type=seed, nargs="+", action=Extend, default=[0, 1], help="seeds (default: 0 1)")
    p.add_argument("--out", default=None, help="output folder (default: runs/explore)")
    p.add_argument("--store", default=None,
                   help="the job store shared by explores (default: runs/explore-store)")
    p.add_argument("--device", default=Execution.device, help="cpu | cuda | cuda:N | auto (default)")
    p.add_argument("--proxy", nargs="?", const="cpu", default=None, metavar="NAME",
                   help=f"a named proxy scale ({', '.join(PROXIES)}; default: the recipe's)")
    p.add_argument("--width", type=number, default=1.0, help="width multiplier (default 1)")
    p.add_argument("--depth", type=number, default=1.0, help="depth multiplier (default 1)")
    p.add_argument("--low-res", type=int, choices=[0, 1, 2], default=None, help="total stem stride 1 or 2")
    p.add_argument("--init-rule", choices=["paper", "width"], default=None, help="weight init rule (see train)")
    p.add_argument("--layer-scale", type=number, default=None, help="layer-scale init (see train)")
    p.add_argument("--workers", type=int_between(1, 256, "--workers"), default=Execution.workers,
                   help="train N jobs side by side in local processes")
    p.add_argument("--threads", type=int_between(0, 1024, "--threads"), default=0,
                   help="CPU threads for torch per worker (default: torch's choice; with --workers N: cores / N)")
    p.add_argument("--claim-timeout", type=positive_number, default=Execution.claim_timeout,
                   help="seconds without a heartbeat before another process takes a job over "
                        f"(default {Execution.claim_timeout:g})")
    p.add_argument("--accum-steps", type=positive_int, default=None, metavar="N", help="gradient accumulation steps")
    p.add_argument("--launcher", choices=["local", "slurm"], default="local",
                   help="local (default) or slurm: each round's jobs as array tasks, waited for")
    p.add_argument("--partition", default=None, help="Slurm partition (--launcher slurm)")
    p.add_argument("--gpus-per-job", type=nonneg_int, default=None, help="GPUs per Slurm job")
    p.add_argument("--nodes-per-job", type=positive_int, default=1, help="nodes per Slurm job (default 1)")
    p.add_argument("--array-parallelism", type=positive_int, default=64, help="array tasks at once (default 64)")
    p.add_argument("--time", type=positive_int, default=4320, help="time limit per Slurm job in minutes")
    p.add_argument("--plan", action="store_true",
                   help="print round 1's jobs, the worst-case job count and a time estimate, then exit")
    p.set_defaults(func=cmd_explore)
