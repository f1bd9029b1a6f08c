"""The training engine: every step of a roadmap trained under one fixed recipe, per seed,
into a run directory that can be resumed, extended and read by the report.

Where things are (one module per concern; read them in this order)::

    config.py       RunConfig and prepare_run: a request (``modernize.request``: what is
                    trained, and how) resolved and checked before training
    runner.py       run / train_roadmap: the jobs of a run, claimed one at a time; local workers
    job.py          run_job: one step with one seed: setup -> resume -> per epoch
                    (train_epoch, validate, checkpoint) -> result
    loop.py         train_epoch (one epoch), validate (precise BN + evaluate)
    checkpoint.py   last.pt / prev.pt with every rank's RNG state, corrupt files moved aside;
                    Interrupt: Ctrl-C / SIGTERM become a checkpoint and a clean stop
    seeds.py        every seed derivation, by name
    batches.py      the data order of an epoch (and the rank's share of it)
    optim.py        optimizer, weight-decay groups, learning-rate schedule
    fingerprint.py  job fingerprints (what decides reuse) and the run.json check
    plan.py         the plan printed before a run (``train --plan``): steps, images, MACs, time
    dist.py         the process group (torchrun); progress.py: bar, epoch line, TensorBoard

The run folder's files and fields are defined in ``modernize.runfolder`` (also read by the
report). A job is reused (skipped or resumed) only when its fingerprint (the step's spec, the
proxy, the resolved recipe values, the data spec, the seed, the effective global batch,
torch major.minor), stored in its config.json and result.json, matches this command's. Nothing is
written to RUN_DIR before the fingerprints, the data and the batch checks have passed.

Determinism: all randomness of an epoch comes from the global generators, which are seeded
from (seed, epoch, rank) when an epoch starts and saved in every checkpoint; the data order of
an epoch comes from its own generator (``seeds.py``). A run killed anywhere and resumed from
its last checkpoint (end of an epoch, every ``ckpt_every`` iterations, or on Ctrl-C) therefore
ends with the same weights and metrics as an uninterrupted one (on CPU; in-memory data).
With gradient accumulation an iteration is one optimizer step over ``accum_steps``
micro-batches, and checkpoints and stops fall only between iterations.
"""

from __future__ import annotations

from ..device import resolve_device
from ..request import Execution, RunRequest, request_of
from ..runfolder import LOG_COLUMNS
from .config import RunConfig, override_notes, prepare_run
from .dist import Dist, init_distributed
from .fingerprint import fingerprint_parts, job_mismatch
from .job import Job, run_job
from .loop import evaluate
from .optim import make_optimizer, make_scheduler, param_groups
from .runner import pending_jobs, plan_roadmap, record_run, run, run_workers, train_roadmap

__all__ = ["LOG_COLUMNS", "Dist", "Execution", "Job", "RunConfig", "RunRequest", "evaluate", "fingerprint_parts",
           "init_distributed", "job_mismatch", "make_optimizer", "make_scheduler", "override_notes", "param_groups",
           "pending_jobs", "plan_roadmap", "prepare_run", "record_run", "request_of", "resolve_device", "run",
           "run_job", "run_workers", "train_roadmap"]
