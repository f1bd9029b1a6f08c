"""The seeds the data layer derives, by name: the fixed subsets of a recipe's
``train_images`` / ``val_images`` and the per-sample augmentation seeds of streamed data.

They live here, not in ``modernize.train.seeds``, because the data layer sits below the
engine and must not import it; ``modernize.train.seeds`` re-exports them, so the engine's list
of seed derivations stays complete. The values are part of every result: changing one changes
which images a run trains on or how they are augmented."""

from __future__ import annotations

_SUBSET_SEEDS = {"train": 1234, "val": 4321}


def subset_seed(split: str) -> int:
    """The generator seed of a split's fixed random subset (``train`` or ``val``): the same for
    every step, seed and data kind, so every job of a run sees the same images."""
    return _SUBSET_SEEDS[split]


def sample_seed(order_seed: int, index: int) -> int:
    """The augmentation seed of sample ``index`` of a streamed data set in an epoch whose order
    comes from ``order_seed`` (``train.seeds.data_order_seed``): a function of the two alone, so
    the augmentation does not depend on the number of loader workers or on resuming."""
    return (order_seed * 1_000_003 + index) % 2**63
