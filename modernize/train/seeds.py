"""Every seed the engine derives, by name. All randomness of a job comes from these, which is
what makes a run killed anywhere and resumed end with the same weights as an uninterrupted
one. The formulas are part of the results: changing one changes every number a run produces
(tests/test_train.py checks that a killed and resumed run matches an uninterrupted one).

The data layer's own seeds (``subset_seed``: the fixed image subsets; ``sample_seed``: the
augmentation of a streamed sample) are defined in ``modernize.data.seeds``, because the data
layer must not import the engine, and re-exported here."""

from __future__ import annotations

import random

import numpy as np
import torch

from ..data.seeds import sample_seed, subset_seed

__all__ = ["PRECISE_BN_ORDER_SEED", "data_order_seed", "epoch_seed", "model_init_seed", "sample_seed",
           "seed_everything", "subset_seed"]

PRECISE_BN_ORDER_SEED = -1 % 2**31
"""The order of the training images that precise BN averages over: one fixed order for every
job and epoch, so the BN statistics depend only on the weights being evaluated."""


def seed_everything(seed: int) -> None:
    """Seed the global generators (Python, NumPy, torch); NumPy takes ``seed % 2**32``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_init_seed(job_seed: int) -> int:
    """The global generators before the model is built: its initial weights are a function of
    the job's seed alone (the same on every rank, so DDP replicas start equal)."""
    return job_seed


def epoch_seed(job_seed: int, epoch: int, rank: int) -> int:
    """The global generators at the start of an epoch on one rank: batch augmentation (mixup,
    cutmix, random erasing, in-memory crops and flips) and drop path draw from them. Reseeded
    per epoch so that a run resumed at an epoch boundary needs no saved generator state (a
    mid-epoch checkpoint saves it); ``rank`` makes every rank draw its own augmentations. The
    large prime keeps seeds of different jobs and epochs from meeting."""
    return job_seed * 1_000_003 + epoch * 1_009 + rank


def data_order_seed(job_seed: int, epoch: int) -> int:
    """The epoch's permutation of the training images (its own ``torch.Generator``, not the
    global ones): the same on every rank, each rank taking its slice of every global batch, and
    independent of how many random numbers augmentation used. Streamed data sets also seed
    each sample's augmentation from it (``sample_seed``)."""
    return job_seed * 100_003 + epoch
