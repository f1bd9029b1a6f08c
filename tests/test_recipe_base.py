"""Recipes that inherit (``base = "NAME|PATH"``), the rule for a file without a base, and the
budget lines printed before training (issue 21, deliverable 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modernize.cli import main
from modernize.errors import ConfigError
from modernize.recipe import Recipe, builtin_recipes, config_hash, differences, load_recipe, recipe_base
from modernize.train.config import prepare_run
from modernize.train.runner import record_run
from tests.conftest import TINY, recipe_text


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tiny_text(**kw: object) -> str:
    return recipe_text(TINY | kw)


def test_builtin_recipes_resolve_as_before() -> None:
    """Same resolved values (hence fingerprints) as before recipes could inherit."""
    pinned = {"cifar100_gpu": "9e11a1c5986ed448", "paper": "bf4e64b1786b41b2", "quick": "c80d37136731f89b",
              "resnet_original": "6f44200e6eb1ae14", "study": "3434619e462355fc"}
    # accum_steps / global_batch came later and are outside the fingerprint (the effective batch is in it).
    new = ("accum_steps", "global_batch")
    assert {n: config_hash({k: v for k, v in load_recipe(n).to_dict().items() if k not in new})
            for n in builtin_recipes() if n in pinned} == pinned
    assert all(recipe_base(n) is None for n in builtin_recipes())


def test_base_by_name_gives_its_values_with_the_files_keys_on_top(tmp_path: Path) -> None:
    path = write(tmp_path / "slow_lr.toml", 'base = "quick"\nlr = 1e-3\n')
    r, quick = load_recipe(path), load_recipe("quick")
    assert r.name == "slow_lr" and r.lr == 1e-3
    assert r.to_dict() | {"name": "", "description": ""} == quick.replace(lr=1e-3).to_dict() | {"name": "",
                                                                                                    "description": ""}
    assert differences(r, recipe_base(path)) == {"lr": (4e-3, 1e-3)}  # type: ignore[arg-type]


def test_base_path_is_relative_to_the_file_and_chains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a" / "root.toml", tiny_text(epochs=3))
    write(tmp_path / "a" / "mid.toml", 'base = "root.toml"\nbatch_size = 8\n')
    leaf = write(tmp_path / "b" / "leaf.toml", 'base = "../a/mid.toml"\nlr = 5e-4\n')
    monkeypatch.chdir(tmp_path / "b")  # the base is found from the file, not from the working folder
    r = load_recipe(leaf)
    assert (r.epochs, r.batch_size, r.lr, r.resolution, r.name) == (3, 8, 5e-4, 16, "leaf")
    assert recipe_base(leaf).name == "mid"  # type: ignore[union-attr]


def test_substitute_tables_merge_key_by_key(tmp_path: Path) -> None:
    path = write(tmp_path / "r.toml", 'base = "quick"\ntrain_images = 3000\n'
                                      '[substitute.resnet_original]\nepochs = 2\n')
    r, quick = load_recipe(path), load_recipe("quick")
    sub = r.substitute["resnet_original"]
    assert sub["epochs"] == 2  # the file's key
    assert sub["decay_epochs"] == quick.substitute["resnet_original"]["decay_epochs"]  # the base's, kept
    assert sub["train_images"] == 3000  # repeated the base's budget: follows the file's new value
    step0 = r.for_step("resnet_original")
    assert (step0.optimizer, step0.epochs, step0.train_images) == ("sgd", 2, 3000)


@pytest.mark.parametrize("files", [{"self.toml": 'base = "self.toml"\n'},
                                   {"x.toml": 'base = "y.toml"\nlr = 1\n', "y.toml": 'base = "x.toml"\n'}])
def test_base_cycle_is_refused_in_one_line(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=r"recipe bases form a cycle \(.* -> .*\)") as err:
        load_recipe(tmp_path / next(iter(files)))
    assert "\n" not in str(err.value)


def test_unknown_base_names_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"base = 'quik'.*built-ins: .*quick"):
        load_recipe(write(tmp_path / "r.toml", 'base = "quik"\n'))


def test_partial_recipe_without_base_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "lr_only.toml", 'description = "just a slower lr"\nlr = 1e-3\n')
    with pytest.raises(ConfigError, match=r"lr_only\.toml: names no base.*epochs, batch_size, resolution, lr_batch"
                                          r".*base = \"quick\""):
        load_recipe(path)
    load_recipe(write(tmp_path / "full.toml", tiny_text()))  # every budget key given: no base needed


def test_partial_recipe_never_starts_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "lr_only.toml", "lr = 1e-3\n")
    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic:32", "--recipe", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "names no base" in err and 'base = "quick"' in err
    assert not out.exists()


def test_budget_lines_and_small_data_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path / "tiny.toml", tiny_text(val_images=8))
    path = write(tmp_path / "more.toml", 'base = "tiny.toml"\nlr = 1e-3\ntrain_images = 100\n')
    cfg = prepare_run(None, data="synthetic:48", recipe=path, seeds=[0], out=tmp_path / "run", device="cpu",
                      steps=["separate_downsampling"])
    assert cfg.notes[:2] == [
        "budget: recipe 'more': 1 epoch(s) over 100 images, 16 px, global batch 16, lr 0.001 (0.001 per 16 images), "
        "proxy none (the paper's scale)",
        "budget: differs from its base 'tiny' in: lr 0.002 -> 0.001, train_images 0 -> 100"]
    record_run(cfg)  # the checks and data loading that precede training; trains nothing
    said = capsys.readouterr().out
    assert ("note: data synthetic:48 holds 48 training images, fewer than recipe 'more' asks (train_images = 100): "
            "each epoch is one pass over all 48, 3 optimiser steps per epoch instead of 6") in said
    assert "val_images" not in said  # 12 evaluation images >= 8 asked: nothing to say
    assert not (tmp_path / "run" / "separate_downsampling").exists()
    assert load_recipe(base) == Recipe(name="tiny", **(TINY | {"val_images": 8}))  # type: ignore[arg-type]
