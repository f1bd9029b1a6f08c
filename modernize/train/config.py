"""A run's configuration: ``prepare_run`` resolves and checks everything (roadmap, steps,
recipes, data, device, proxy) before anything is trained or written, into a ``RunConfig``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import Data, DataKey, DataSpec, check_data
from ..data import data_key as key_of_data
from ..device import resolve_device
from ..errors import ConfigError
from ..paths import check_output_kind
from ..proxy import ProxyScale, proxy_label, proxy_preset
from ..recipe import Recipe, builtin_recipes, differences, load_recipe, recipe_base
from ..request import Execution, RunRequest, request_of
from ..roadmap import Roadmap, Step, check_step_name, check_under_proxy, load_roadmap
from ..runfolder import job_folder
from ..spec import ArchSpec
from .batches import batching
from .dist import Dist, group_from_env


@dataclass
class RunConfig:
    """A request resolved and checked: the roadmap, recipes, data spec, proxy and device it
    names, with how it runs (``execution``). The engine starts the process group, not this."""

    request: RunRequest
    """What was asked, as given (``roadmap``, ``recipe``, ``proxy`` below are it resolved)."""
    execution: Execution
    roadmap: Roadmap
    recipe: Recipe
    data: DataSpec
    proxy: ProxyScale
    seeds: list[int]
    steps: list[Step]
    device: str
    """The device this process trains on (``execution.device`` resolved; ``cuda:<local rank>``
    under torchrun)."""
    dist: Dist
    """This process's place in the process group torchrun describes (not yet joined)."""
    out: Path
    step_recipes: dict[str, Recipe] = field(default_factory=dict)
    worker: int | None = None
    """Index of this local worker (``run_workers``); None for a plain process."""
    notes: list[str] = field(default_factory=list)
    """One-line notices printed before any training (e.g. a step override run as written)."""
    recipe_source: str | Path | None = None
    """The recipe name or file the run's recipe was loaded from (the run folder keeps a copy of
    the file and its bases); None for a ``Recipe`` object."""

    @property
    def force(self) -> bool:
        """Retrain jobs whose fingerprint differs (the old job folders go to RUN_DIR/.replaced/)."""
        return self.request.force

    @property
    def global_batch(self) -> int:
        """The effective global batch of the run's recipe (batch x processes x accumulation)."""
        return batching(self.recipe, self.dist.world).global_batch

    def compared(self) -> dict[str, Any]:
        """What must match for two invocations to share a run directory."""
        return {
            "roadmap": self.roadmap.name,
            "recipe": self.recipe.to_dict(),
            "step_recipes": {k: v.to_dict() for k, v in sorted(self.step_recipes.items())},
            "data": str(self.data),
            "proxy": self.proxy.to_dict(),
            "global_batch": self.global_batch,
        }

    def recipe_of(self, step: Step) -> Recipe:
        """The recipe a step trains with: its override (resolved for this run), else the run's."""
        return self.step_recipes.get(step.recipe or "", self.recipe)


def job_dir(cfg: RunConfig, step: Step, seed: int) -> Path:
    """``RUN_DIR/<step>/seed<k>``, refused unless it stays inside RUN_DIR."""
    why = check_step_name(step.name)
    if why:
        raise ConfigError(f"roadmap '{cfg.roadmap.name}': {why}")
    folder = job_folder(cfg.out, step.name, seed)
    if not folder.resolve().is_relative_to(cfg.out.resolve()):
        raise ConfigError(f"step '{step.name}': its folder {folder} would be outside the run directory {cfg.out}")
    return folder


def train_spec(step: Step, cfg: RunConfig, data: Data, recipe: Recipe) -> ArchSpec:
    """The spec a step trains: the proxy applied, sized to the data set, the recipe's drop path."""
    spec = cfg.proxy.apply(step.spec)
    return spec.replace(num_classes=data.num_classes, in_chans=data.in_chans, drop_path=recipe.drop_path)


def data_key(cfg: RunConfig, recipe: Recipe) -> DataKey:
    """Recipes with equal keys share one loaded data set (``data.DataKey``: the recipe's data
    part, and for image folders its augmentation part); the key is what ``load_data`` gets."""
    return key_of_data(cfg.data, recipe)


def prepare_run(request: RunRequest | Roadmap | str | Path | None = None, execution: Execution | None = None,
                **options: Any) -> RunConfig:
    """Resolve and validate everything (roadmap, steps, recipes, data path, device) before any
    training or writing starts; the keyword form builds the request (``request_of``).
    ``accum_steps`` replaces the run recipe's accumulation (and its ``global_batch``); a step's
    override recipe keeps its own (the original ResNet recipe's batch is 256, not the paper's
    4,096). The process group is only read from torchrun's environment here: joining it is
    the engine's (``runner.run``), so checking a request starts nothing."""
    req, exe = request_of(request, execution, options)
    check_output_kind(req.out, "run folder")  # a report's or an explore's folder is not a run folder
    rm = req.roadmap if isinstance(req.roadmap, Roadmap) else load_roadmap(req.roadmap)
    chosen = rm.select(list(req.steps) if req.steps else None)
    named = req.recipe if req.recipe is not None else (rm.recipe_source(rm.recipe) if rm.recipe else "paper")
    rec = named if isinstance(named, Recipe) else load_recipe(named)
    step_recipes: dict[str, Recipe] = {}
    for s in [*chosen, *rm]:  # every override of the roadmap, so that --steps subsets share one run config
        if s.recipe and s.recipe != rec.name and s.recipe not in step_recipes:
            step_recipes[s.recipe] = rec.for_step(s.recipe, rm.recipe_source(s.recipe))
    if req.accum_steps is not None:
        rec = rec.replace(accum_steps=req.accum_steps, global_batch=0)
    _check_substitutes(rec, rm)
    spec = DataSpec.parse(req.data)
    check_data(spec, download=exe.download)
    dev = resolve_device(exe.device)
    d = group_from_env()
    if dev == "cuda" and d.active:
        dev = f"cuda:{d.local_rank}"
    for s in chosen:  # a global_batch this process count cannot make: refused now
        batching(step_recipes.get(s.recipe or "", rec), d.world)
    proxy = req.proxy or (proxy_preset(rec.proxy) if rec.proxy else ProxyScale())  # flags, else the recipe's
    check_under_proxy(rm, proxy, chosen)
    base = None if isinstance(named, Recipe) else recipe_base(named)
    gb = batching(rec, d.world).global_batch  # the run line's and the jobs' global batch: one source
    return RunConfig(request=req, execution=exe, roadmap=rm, recipe=rec, data=spec, proxy=proxy,
                     seeds=list(dict.fromkeys(req.seeds)), steps=chosen, device=dev, dist=d, out=req.out,
                     step_recipes=step_recipes, recipe_source=None if isinstance(named, Recipe) else named,
                     notes=[*budget_lines(rec, base, proxy, gb), *override_notes(rec, chosen, step_recipes)])


def budget_lines(recipe: Recipe, base: Recipe | None, proxy: ProxyScale, global_batch: int) -> list[str]:
    """The resolved budget printed before training, and what differs from the recipe's base."""
    images = f"{recipe.train_images:,} images" if recipe.train_images else "all training images"
    lines = [f"budget: recipe '{recipe.name}': {recipe.epochs:g} epoch(s) over {images}, {recipe.resolution} px, "
             f"global batch {global_batch}, lr {recipe.scaled_lr(global_batch):.3g} ({recipe.lr:g} per "
             f"{recipe.lr_batch} images), proxy {proxy_label(proxy)}"]
    if base is not None:
        diff = differences(recipe, base)
        said = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items()) or "nothing"
        lines.append(f"budget: differs from its base '{base.name}' in: {said}")
    return lines


def data_size_notes(recipe: Recipe, data: Data, d: Dist) -> list[str]:
    """One line per split that holds fewer images than the recipe asks, saying what the run does."""
    from .batches import iters_per_epoch

    notes = []
    n_train, n_val = len(data.train), len(data.val)
    if recipe.train_images > n_train:
        asked = recipe.train_images // (recipe.batch_size * d.world)
        notes.append(f"note: data {data.spec} holds {n_train:,} training images, fewer than recipe '{recipe.name}' "
                     f"asks (train_images = {recipe.train_images}): each epoch is one pass over all {n_train:,}, "
                     f"{iters_per_epoch(data, recipe.batch_size, d)} optimiser steps per epoch "
                     f"instead of {asked} (the schedule follows the steps that run)")
    if recipe.val_images > n_val:
        notes.append(f"note: data {data.spec} holds {n_val:,} evaluation images, fewer than recipe "
                     f"'{recipe.name}' asks (val_images = {recipe.val_images}): every one of them is evaluated")
    return notes


def _check_substitutes(recipe: Recipe, roadmap: Roadmap) -> None:
    """A ``[substitute.NAME]`` table whose NAME is neither a built-in recipe nor an override of a
    step of this roadmap is a typo (``resnet_orginal``): the step it was meant for would train
    with its override as written (90 epochs at 224 px) after only a note."""
    known = set(builtin_recipes()) | {s.recipe for s in roadmap if s.recipe}
    for name in recipe.substitute:
        if name not in known:
            raise ConfigError(f"recipe '{recipe.name}' table [substitute.{name}]: no built-in recipe and no step of "
                              f"roadmap '{roadmap.name}' is called {name!r} (steps override with: "
                              f"{', '.join(sorted({s.recipe for s in roadmap if s.recipe})) or 'none'})")


def override_notes(recipe: Recipe, steps: Sequence[Step], step_recipes: dict[str, Recipe] | None = None) -> list[str]:
    """One line per step whose recipe override runs as written: the run's recipe has no
    ``[substitute.NAME]`` table for it (e.g. 90 epochs at 224 px under a 1-epoch recipe)."""
    notes = []
    for s in steps:
        if s.recipe and s.recipe != recipe.name and s.recipe not in recipe.substitute:
            r = step_recipes[s.recipe] if step_recipes else recipe.for_step(s.recipe)
            notes.append(f"note: step {s.name} trains with recipe '{s.recipe}' as written ({r.epochs} epochs, "
                         f"{r.resolution} px, batch {r.batch_size}): the run's recipe '{recipe.name}' has no "
                         f"[substitute.{s.recipe}] table")
    return notes
