"""The recipe is made of typed parts; what a part is for is derived from it, not listed again:
the data-set cache key is the data part, the keys outside a job's fingerprint are those of the
parts that say so."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from modernize.recipe import KEYS, NOT_IN_FINGERPRINT, PARTS, Augmentation, DataPart, Recipe, load_recipe
from modernize.train.config import data_key


def test_every_key_is_in_exactly_one_part() -> None:
    names = [f.name for part in PARTS for f in dataclasses.fields(part)]
    assert sorted(names) == sorted(KEYS) and len(names) == len(set(names))


def test_keys_outside_the_fingerprint() -> None:
    # Pinned: a change here changes every job's fingerprint (old runs would retrain).
    assert set(NOT_IN_FINGERPRINT) == {"name", "description", "substitute", "accum_steps", "global_batch"}


def _changed(recipe: Recipe, key: str) -> Recipe:
    value = getattr(recipe, key)
    other = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v / 2 if v else 0.5, str: None}[type(value)]
    if other is None:  # a Literal: another allowed value
        import typing
        allowed = typing.get_args(typing.get_type_hints(Recipe)[key])
        return recipe.replace(**{key: next(a for a in allowed if a != value)})
    return recipe.replace(**{key: other(value)})


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(DataPart)])
def test_every_data_key_changes_the_loaded_set(key: str) -> None:
    cfg = SimpleNamespace(data=SimpleNamespace(kind="fashion-mnist"))
    quick = load_recipe("quick")
    assert data_key(cfg, _changed(quick, key)) != data_key(cfg, quick)


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(Augmentation)])
def test_augmentation_changes_an_image_folders_set_only(key: str) -> None:
    quick = load_recipe("quick")
    memory = SimpleNamespace(data=SimpleNamespace(kind="fashion-mnist"))
    folder = SimpleNamespace(data=SimpleNamespace(kind="imagefolder"))
    changed = _changed(quick, key)
    assert data_key(memory, changed) == data_key(memory, quick)
    assert data_key(folder, changed) != data_key(folder, quick)


def test_optimizer_keys_share_the_loaded_set() -> None:
    cfg = SimpleNamespace(data=SimpleNamespace(kind="fashion-mnist"))
    quick = load_recipe("quick")
    assert data_key(cfg, quick.replace(lr=1e-2, epochs=3, precision="fp32")) == data_key(cfg, quick)
