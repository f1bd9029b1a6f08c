"""``run_ablation.py train``: train every step of a roadmap under one recipe."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..files import check_out_path
from ..proxy import PROXIES, ProxyScale, proxy_preset
from ..request import Execution, RunRequest
from .argtypes import (
    Extend,
    add_roadmap_argument,
    int_between,
    nonneg_int,
    number,
    positive_int,
    positive_number,
    seed,
    step_names,
)
from .report import print_report

if TYPE_CHECKING:
    from ..launch import SlurmOptions


def proxy_from_args(args: argparse.Namespace) -> ProxyScale | None:
    manual = (args.width != 1.0 or args.depth != 1.0 or args.low_res is not None or args.init_rule is not None
              or args.layer_scale is not None)
    if args.proxy:
        if manual:
            preset = proxy_preset(args.proxy)
            raise ConfigError(f"--proxy {args.proxy} sets {preset.to_dict()} itself; "
                              "give either --proxy or --width/--depth/--low-res/--init-rule/--layer-scale")
        return proxy_preset(args.proxy)
    if not manual:
        return None  # the recipe's proxy (its 'proxy' key), else the paper's scale
    stride = None if args.low_res in (None, 0) else args.low_res
    return ProxyScale(width=args.width, depth=args.depth, stem_stride=stride, init=args.init_rule or "paper",
                      layer_scale=args.layer_scale)


def run_request(args: argparse.Namespace) -> tuple[RunRequest, Execution]:
    """The request (what is trained) and execution (how) the flags ask for; every default not
    given on the command line is the dataclass field's own."""
    out = Path(args.out) if args.out else Path("runs") / "train"
    steps = step_names(args.steps)
    if args.steps is not None and not steps:
        raise ConfigError("--steps: give step names, e.g. --steps resnet50 kernel_7 (or resnet50,kernel_7)")
    check_out_path(out)
    request = RunRequest(roadmap=args.roadmap, data=args.data, recipe=args.recipe, seeds=args.seeds, out=out,
                         steps=steps, proxy=proxy_from_args(args), accum_steps=args.accum_steps,
                         force=getattr(args, "force", False))
    execution = Execution(device=args.device, workers=args.workers, threads=args.threads or None,
                          compile=True if args.compile else None, ckpt_every=args.ckpt_every,
                          claim_timeout=args.claim_timeout, tensorboard=args.tensorboard, download=args.download)
    return request, execution


def _slurm_options(args: argparse.Namespace) -> tuple[SlurmOptions, str]:
    """The Slurm options and the tasks' device, checked (``--plan`` checks them too)."""
    from ..launch import SlurmOptions, resolve_options

    if args.workers != 1:
        raise ConfigError("--workers is for local runs; with --launcher slurm each job is its own array task")
    opts = SlurmOptions(partition=args.partition, gpus_per_job=args.gpus_per_job, nodes_per_job=args.nodes_per_job,
                        array_parallelism=args.array_parallelism, time_min=args.time,
                        cluster="local" if os.environ.get("MODERNIZE_SUBMITIT_LOCAL") else None)
    return resolve_options(opts, args.device)


def _submit_slurm(args: argparse.Namespace, request: RunRequest, execution: Execution) -> int:
    from ..launch import submit_roadmap, wait_jobs

    opts, device = _slurm_options(args)
    out = request.out
    jobs = submit_roadmap(request, dataclasses.replace(execution, device=device), slurm=opts)
    if not jobs:
        print(f"submitted nothing: every job of {out} is finished; run_ablation.py report {out}")
        return 0
    ids = " ".join(str(j.job_id) for j in jobs)
    arrays = ",".join(sorted({str(j.job_id).split("_")[0] for j in jobs}))
    print(f"submitted {len(jobs)} job(s) to Slurm ({opts.gpus_per_job} GPU(s) per job, --device {device}): {ids}",
          flush=True)
    if not args.wait:
        print(f"follow them: squeue -j {arrays} (sacct -j {arrays} where accounting is on); a task's log: "
              f"{jobs[0].paths.stderr}; once they have ended, rerunning this command resubmits unfinished jobs "
              f"from their checkpoints; "
              f"when they end: run_ablation.py report {out}")
        return 0
    print(f"waiting for them (Ctrl-C stops waiting, not the jobs: scancel {arrays} does)", flush=True)
    outcomes = wait_jobs(jobs, note=lambda line: print(line, file=sys.stderr, flush=True))
    bad = [o for o in outcomes if o.state != "done"]
    for o in bad:
        print(f"task {o.job_id} ({o.step} seed {o.seed}) {o.state}: {o.detail}; log: {o.log}", file=sys.stderr)
    print(f"{len(outcomes) - len(bad)} of {len(outcomes)} job(s) done", flush=True)
    if len(bad) < len(outcomes):
        print_report(out)
    if bad:
        print(f"error: {len(bad)} job(s) did not finish; rerunning this command resubmits them from their "
              "checkpoints", file=sys.stderr)
        return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..train import train_roadmap

    request, execution = run_request(args)
    if args.plan:  # the same checks as the run (launcher, RUN_DIR, fingerprints, data), then the plan
        from ..train import plan_roadmap

        if args.launcher == "slurm":
            _slurm_options(args)
        plan_roadmap(request, execution)
        return 0
    if args.launcher == "slurm":
        return _submit_slurm(args, request, execution)
    train_roadmap(request, execution)
    if int(os.environ.get("RANK", "0")) == 0:  # the report once, from the first process
        print_report(request.out)
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train every step of a roadmap under one recipe (resumable)",
                       description="Train every step (or --steps) of a roadmap for each seed into RUN_DIR. "
                                   "Rerunning the same command skips finished jobs and resumes an interrupted "
                                   "one. Under torchrun: DDP, global batch = per-process batch x processes "
                                   "x accumulation steps.")
    add_roadmap_argument(p)
    p.add_argument("--data", default=RunRequest.data,
                   help="fashion-mnist[:DIR] | cifar10[:ROOT] | cifar100[:ROOT] | imagefolder:PATH | synthetic[:N]")
    p.add_argument("--recipe", default=None,
                   help="recipe name in ablations/recipes/ or a .toml path (default: the roadmap's recipe)")
    p.add_argument("--seeds", type=seed, nargs="+", action=Extend, default=list(RunRequest.seeds),
                   help=f"seeds (default: {' '.join(map(str, RunRequest.seeds))})")
    p.add_argument("--out", default=None, help="run directory (default: runs/train)")
    p.add_argument("--steps", nargs="+", action=Extend, default=None, help="only these steps (names from the roadmap)")
    p.add_argument("--device", default=Execution.device, help="cpu | cuda | cuda:N | auto (default)")
    p.add_argument("--download", action="store_true", help="let torchvision download a missing data set")
    p.add_argument("--proxy", nargs="?", const="cpu", default=None, metavar="NAME",
                   help=f"a named proxy scale ({', '.join(PROXIES)}; bare --proxy: cpu = width x0.25, "
                        "depth x0.34, stem stride 2)")
    p.add_argument("--width", type=number, default=1.0, help="width multiplier for every step (default 1)")
    p.add_argument("--depth", type=number, default=1.0, help="depth multiplier for every step (default 1)")
    p.add_argument("--low-res", type=int, choices=[0, 1, 2], default=None,
                   help="low-resolution mode: total stem stride 1 or 2 for both stem kinds (0/omitted: paper stems)")
    p.add_argument("--init-rule", choices=["paper", "width"], default=None,
                   help="weight init std: paper = 0.02 at every width; width = 0.02 / sqrt(width multiplier)")
    p.add_argument("--layer-scale", type=number, default=None,
                   help="layer-scale init for the steps that have one (default: the step's own, 1e-6)")
    p.add_argument("--workers", type=int_between(1, 256, "--workers"), default=Execution.workers,
                   help="train N jobs side by side in local processes (CUDA: worker i on cuda:i)")
    p.add_argument("--claim-timeout", type=positive_number, default=Execution.claim_timeout,
                   help="seconds without a heartbeat before another process takes a job over "
                        f"(default {Execution.claim_timeout:g})")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard scalars per job under RUN_DIR/<step>/seed<k>/tb")
    p.add_argument("--launcher", choices=["local", "slurm"], default="local",
                   help="local (default) or slurm: one array task per pending job, through submitit")
    p.add_argument("--partition", default=None, help="Slurm partition (--launcher slurm)")
    p.add_argument("--gpus-per-job", type=nonneg_int, default=None,
                   help="GPUs per Slurm job, DDP inside (default: 1 where the partition has GPU gres, else 0: "
                        "CPU tasks with --device cpu)")
    p.add_argument("--wait", action="store_true",
                   help="with --launcher slurm: wait for the tasks, name each failed one with its log, then report")
    p.add_argument("--nodes-per-job", type=positive_int, default=1, help="nodes per Slurm job (default 1)")
    p.add_argument("--array-parallelism", type=positive_int, default=64,
                   help="at most this many array tasks at once (default 64)")
    p.add_argument("--time", type=positive_int, default=4320, help="time limit per Slurm job in minutes")
    p.add_argument("--ckpt-every", type=nonneg_int, default=Execution.ckpt_every,
                   help="also checkpoint every N iterations within an epoch (default: epoch ends and Ctrl-C)")
    p.add_argument("--threads", type=int_between(0, 1024, "--threads"), default=0,
                   help="CPU threads for torch, per worker (default: torch's choice; with --workers N: "
                        "cores / N)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA only)")
    p.add_argument("--accum-steps", type=positive_int, default=None, metavar="N",
                   help="gradient accumulation: N micro-batches per optimizer step; global batch = batch x "
                        "processes x N (default: the recipe's accum_steps / global_batch)")
    p.add_argument("--plan", action="store_true",
                   help="print each job's batch, optimizer steps, images, MACs and estimated time, then exit "
                        "without training (writes nothing)")
    add_force(p)
    p.set_defaults(func=cmd_train)


def add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true",
                   help="retrain the jobs of RUN_DIR whose fingerprint differs from this command's "
                        "(their folders are moved to RUN_DIR/.replaced/<time>/, nothing is deleted)")
