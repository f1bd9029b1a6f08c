"""The data layer is given the recipe's data parts, never the recipe: a ``DataKey`` holds the
exact ``DataPart`` (and, for image folders, the ``Augmentation`` part), so no other recipe key
can reach the loading code or split the cache. Every split, in memory or streamed, answers the
loop the same way (``Split.batches``), in the order the loop has always drawn."""

from __future__ import annotations

import dataclasses
import random
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modernize.data import DataKey, DataSpec, InMemory, Loaders, data_key, load_data
from modernize.errors import ConfigError
from modernize.recipe import Augmentation, DataPart, Recipe, load_recipe
from modernize.train import Dist
from modernize.train.batches import epoch_order

OUTSIDE = [f.name for f in dataclasses.fields(Recipe)
           if f.name not in {g.name for part in (DataPart, Augmentation) for g in dataclasses.fields(part)}]


def _other(value: object, hint: object, rng: random.Random) -> object:
    """Another value of ``value``'s kind, drawn."""
    if typing.get_origin(hint) is typing.Literal:
        return rng.choice([a for a in typing.get_args(hint) if a != value] or [value])
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * rng.choice([2, 4]) if value else rng.randrange(1, 5)
    if isinstance(value, float):
        return value * rng.uniform(0.1, 0.9) if value else rng.uniform(0.01, 0.5)
    if isinstance(value, str):
        return f"{value}-{rng.randrange(1000)}"
    return value


def _everything_else_changed(recipe: Recipe, seed: int) -> Recipe:
    """``recipe`` with every key outside the data parts that can take another valid value changed
    (drawn, in a drawn order; a value the recipe refuses is skipped)."""
    rng = random.Random(seed)
    hints = typing.get_type_hints(Recipe)
    for key in rng.sample(OUTSIDE, len(OUTSIDE)):
        try:
            recipe = recipe.replace(**{key: _other(getattr(recipe, key), hints[key], rng)})
        except ConfigError:
            continue
    return recipe


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parts") / "d"
    g = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 8)):
        for i in range(n):
            path = root / split / f"c{i % 3}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(g.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
    return root


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_recipe_key_outside_the_data_parts_cannot_change_the_loaded_set(folder: Path, seed: int) -> None:
    base = load_recipe("quick").replace(resolution=16, train_images=12, val_images=6)
    other = _everything_else_changed(base, seed)
    assert {k for k in OUTSIDE if getattr(other, k) != getattr(base, k)} >= {"lr", "epochs", "optimizer", "name"}
    for text in ("synthetic:40", f"imagefolder:{folder}"):
        spec = DataSpec.parse(text)
        assert data_key(spec, other) == data_key(spec, base)
        a, b = load_data(spec, data_key(spec, base), loader_workers=0), load_data(spec, data_key(spec, other),
                                                                              loader_workers=0)
        for split in ("train", "val"):
            xa, xb = getattr(a, split), getattr(b, split)
            assert len(xa) == len(xb)
            ba = list(xa.batches(torch.arange(len(xa)), batch=4, device="cpu", loaders=a.loaders, order_seed=5))
            bb = list(xb.batches(torch.arange(len(xb)), batch=4, device="cpu", loaders=b.loaders, order_seed=5))
            assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(ba, bb, strict=True))
        a.loaders.close()
        b.loaders.close()


def test_the_key_is_the_parts_themselves() -> None:
    recipe = load_recipe("quick")
    key = data_key(DataSpec.parse("imagefolder:x"), recipe)
    assert type(key.part) is DataPart and type(key.augmentation) is Augmentation
    assert key == DataKey(recipe.part(DataPart), recipe.part(Augmentation))
    assert data_key(DataSpec.parse("synthetic"), recipe).augmentation is None  # augmented on the batch
    # A Recipe is a DataPart too (its parts, flat); as a key it would carry every other key along.
    with pytest.raises(TypeError, match="recipe.part"):
        DataKey(recipe)
    with pytest.raises(TypeError, match="Augmentation"):
        DataKey(recipe.part(DataPart), recipe)


def test_a_data_part_alone_loads_the_same_set_as_before() -> None:
    """The synthetic set through a key equals the in-memory subset + resize drawn by hand."""
    from modernize.data.memory import resize, subset, synthetic
    from modernize.data.seeds import subset_seed

    part = load_recipe("quick").replace(resolution=24, train_images=30, val_images=9).part(DataPart)
    data = load_data(DataSpec.parse("synthetic:60"), DataKey(part))
    raw = synthetic(60)
    want_train = resize(subset(raw["train"], 30, seed=subset_seed("train")), part)
    want_val = resize(subset(raw["val"], 9, seed=subset_seed("val")), part, evaluation=True)
    assert isinstance(data.train, InMemory) and isinstance(data.val, InMemory)
    assert torch.equal(data.train.images, want_train.images) and torch.equal(data.val.images, want_val.images)
    assert data.train_eval is data.train  # precise BN reads the stored, un-augmented images


@pytest.mark.parametrize("draw", range(6))
def test_epoch_order_is_each_ranks_slice_of_whole_global_batches(draw: int) -> None:
    """Against the loop's per-batch slicing, written out: global batch i of the permutation,
    rank r's ``batch`` images of it, from global batch ``skip`` on."""
    rng = random.Random(draw)
    n, batch, world = rng.randrange(1, 200), rng.randrange(1, 9), rng.randrange(1, 4)
    rank, seed = rng.randrange(world), rng.randrange(10_000)
    skip = rng.randrange(0, max(1, n // (batch * world)) + 2)
    d = Dist(rank=rank, world=world)
    gb = batch * world
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    want = [perm[i * gb + rank * batch: i * gb + (rank + 1) * batch] for i in range(skip, n // gb)]
    order = epoch_order(n, batch=batch, d=d, epoch_seed=seed, skip=skip)
    assert order.tolist() == (torch.cat(want).tolist() if want else [])
    split = InMemory(torch.arange(n).view(n, 1, 1, 1).to(torch.uint8), torch.arange(n))
    got = list(split.batches(order, batch=batch, device="cpu", loaders=Loaders(0), drop_last=True))
    assert [y.tolist() for _, y in got] == [w.tolist() for w in want]
