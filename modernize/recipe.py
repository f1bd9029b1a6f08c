"""Training recipes: one TOML file per recipe in ``ablations/recipes/``, every key typed and
validated, so that "the one fixed recipe" of a roadmap is a reviewable value, not code.

A roadmap names its fixed recipe (``recipe = "paper"``); a step may name another
(``recipe = "resnet_original"`` on the paper's first row). A recipe meant for a smaller scale
says how such a step override runs at that scale in a ``[substitute.<recipe>]`` table: the
overriding recipe is loaded and only the keys in that table change (e.g. ``quick`` runs
``resnet_original`` -- SGD, step decay, crop + flip -- for its one epoch with proportional decay
epochs, instead of its 90). Without a substitute the override recipe is used as written.

A recipe file builds on another with ``base = "NAME|PATH"`` (a built-in name, or a path
relative to the file): it is its base with the file's keys on top, ``[substitute.*]`` tables
merged key by key (an inherited table's key that repeats its base's value, as ``quick``'s
``train_images = 6000`` for step 0, follows the file's value of that key, so a derived budget
reaches every step); chains are allowed, cycles refused. A file without ``base`` starts from
nothing but the dataclass defaults, which are the paper's 300-epoch, 224-px recipe; so it must
give every key of ``BUDGET_KEYS`` itself, or it is refused naming the missing ones: a file
holding only ``lr = 1e-3`` never silently becomes a full-size ImageNet run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from ._typing import check_fields, coerce, schema_hints
from .errors import ConfigError
from .files import read_toml
from .paths import ablations_dir, builtin_names, resolve_builtin
from .proxy import PROXIES

RECIPES_DIR = ablations_dir() / "recipes"
P = TypeVar("P", bound="RecipePart")
BUDGET_KEYS = ("epochs", "batch_size", "resolution", "lr", "lr_batch")
"""What a recipe file without ``base`` must give itself (every built-in recipe does)."""
MAX_RESOLUTION = 4096
"""Larger training or input sizes are a typo: refused before any image is resized."""


@dataclass(frozen=True)
class RecipePart:
    """A group of recipe keys with one concern; ``Recipe`` is all of them, flat (one TOML table),
    and ``recipe.part(DataPart)`` gives one group back as its own frozen value."""

    fingerprinted: ClassVar[bool] = True
    """Whether these keys enter a job's fingerprint (see ``NOT_IN_FINGERPRINT``)."""


@dataclass(frozen=True)
class About(RecipePart):
    """What a recipe is called and how it runs a step override. Not in a job's fingerprint: a
    name changes no result, and a substitute table is already applied to the recipe a step runs."""

    fingerprinted: ClassVar[bool] = False

    name: str = "custom"
    description: str = ""
    substitute: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``{recipe_name: {key: value}}``: how a step override runs under this recipe."""


@dataclass(frozen=True)
class Optimizer(RecipePart):
    """The optimizer and its learning rate at a reference batch."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 4e-3
    """Peak learning rate at a global batch of ``lr_batch``; scaled linearly with the batch."""
    lr_batch: int = 4096
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.05
    decay_norm_and_bias: bool = False
    """False: no weight decay on parameters with ndim <= 1 (norms, biases, layer scale)."""
    grad_clip: float = 0.0
    """Max global grad norm; 0 = off. Applied on every precision path (after unscaling for fp16)."""


@dataclass(frozen=True)
class Budget(RecipePart):
    """How long, with how many images per forward pass, at which proxy scale."""

    epochs: int = 300
    batch_size: int = 128
    """Per process and per forward pass (a micro-batch when ``accum_steps`` > 1)."""
    proxy: str = ""
    """The proxy scale this recipe is meant for (a name in ``proxy.PROXIES``), used when
    ``train`` gets no scale flag; "" = the paper's scale."""


@dataclass(frozen=True)
class Accumulation(RecipePart):
    """How the effective batch is reached. Not in a job's fingerprint by itself: it enters
    through the effective global batch, a fingerprint part of its own, so a run may resume on
    another process count that keeps that batch."""

    fingerprinted: ClassVar[bool] = False

    accum_steps: int = 1
    """Gradient accumulation: micro-batches summed into one optimizer step, per process. The
    effective global batch is batch_size x processes x accum_steps; BatchNorm sees micro-batches."""
    global_batch: int = 0
    """0: the effective global batch is batch_size x processes x accum_steps. Else the engine
    derives accum_steps from the processes it has (refused when it does not divide)."""


@dataclass(frozen=True)
class Schedule(RecipePart):
    """The learning rate over the iterations."""

    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 20.0
    warmup_start_factor: float = 1e-3
    min_lr: float = 0.0
    decay_epochs: tuple[float, ...] = ()
    """For ``schedule = "step"``: epochs (fractions allowed) where lr is multiplied by decay_factor."""
    decay_factor: float = 0.1


@dataclass(frozen=True)
class Regularization(RecipePart):
    """Loss smoothing, stochastic depth, weight averaging, BatchNorm statistics."""

    label_smoothing: float = 0.1
    drop_path: float = 0.1
    ema: bool = False
    ema_decay: float = 0.9999
    """With ema = true the reported accuracy is the EMA model's."""
    precise_bn_batches: int = 0
    """Before each evaluation, recompute BatchNorm statistics over this many training batches
    (pycls' precise BN, via ``torch.optim.swa_utils.update_bn``); 0 = off. Short runs need it:
    running averages lag far behind weights that still move fast."""


@dataclass(frozen=True)
class Augmentation(RecipePart):
    """Training-time augmentation (per image for streamed data, per batch in memory)."""

    crop_scale_min: float = 0.08
    hflip: bool = True
    randaugment_ops: int = 0
    randaugment_magnitude: int = 9
    random_erasing: float = 0.0
    mixup: float = 0.0
    """Mixup alpha (0 = off). With mixup and cutmix both on, each batch takes one of them."""
    cutmix: float = 0.0


@dataclass(frozen=True)
class DataPart(RecipePart):
    """Which images, at which size, cropped how: everything that changes a loaded data set
    (``RecipePart``s equal here share one loaded set)."""

    resolution: int = 224
    resize: int = 0
    """Resize every image to ``resize`` px (square) before the crop rule, for training and
    evaluation alike; 0 keeps the native size. E.g. 28-px Fashion-MNIST at 64 px with the
    paper's stride-4 stems: ``resize = 64, resolution = 64, crop = "pad"``."""
    crop: Literal["rrc", "pad", "none"] = "rrc"
    """'rrc': RandomResizedCrop; 'pad': 4 px zero padding + random crop (CIFAR style)."""
    eval_crop_pct: float = 0.875
    """With ``crop = "rrc"``: evaluation resizes the short side to ``resolution / eval_crop_pct``
    then centre-crops ``resolution`` (timm's ``crop_pct``; 224/256 in the paper). Evaluation
    always follows the training crop: ``pad`` pads or centre-crops to ``resolution`` without
    rescaling, ``none`` resizes to ``resolution``."""
    train_images: int = 0
    """Train on the first N images of a fixed per-run shuffle (0 = all). For quick recipes."""
    val_images: int = 0
    bad_images: Literal["fail", "skip"] = "fail"
    """``imagefolder:`` data: an image file that cannot be decoded stops the run with its name
    ('fail'), or is replaced by the next readable image of the split with a warning ('skip')."""


@dataclass(frozen=True)
class Hardware(RecipePart):
    """How the arithmetic runs."""

    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    """Autocast dtype on CUDA; CPU runs always train in fp32."""
    channels_last: bool = True
    compile: bool = False


@dataclass(frozen=True)
class Recipe(Hardware, DataPart, Augmentation, Regularization, Schedule, Accumulation, Budget, Optimizer, About):
    """Every knob of a training run except the architecture and the data: the parts above, flat."""

    def __post_init__(self) -> None:
        if not isinstance(self.substitute, dict):
            raise ConfigError(f"recipe '{self.name}' key 'substitute': must be a table of tables, "
                              f"got {self.substitute!r}")
        for f in dataclasses.fields(self):
            if f.name == "substitute":
                continue
            try:
                object.__setattr__(self, f.name, coerce(getattr(self, f.name), _HINTS[f.name]))
            except TypeError as exc:
                raise ConfigError(f"recipe '{self.name}' key '{f.name}': {exc}") from None
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, key: str, msg: str) -> None:
            if not ok:
                raise ConfigError(f"recipe '{self.name}' key '{key}': {msg}, got {getattr(self, key)!r}")

        for f in dataclasses.fields(self):  # nan/inf pass every comparison below: refuse them first
            v = getattr(self, f.name)
            for x in (v if isinstance(v, tuple) else (v,)):
                if isinstance(x, float) and not math.isfinite(x):
                    raise ConfigError(f"recipe '{self.name}' key '{f.name}': must be a finite number, got {v!r}")
        for key in ("lr", "weight_decay", "min_lr", "grad_clip", "label_smoothing", "mixup", "cutmix",
                    "warmup_epochs", "momentum"):
            need(getattr(self, key) >= 0, key, "must be >= 0")
        need(self.lr > 0, "lr", "must be > 0")
        for key in ("lr_batch", "epochs", "batch_size", "resolution", "accum_steps"):
            need(getattr(self, key) >= 1, key, "must be >= 1")
        need(self.resolution <= MAX_RESOLUTION, "resolution", f"must be at most {MAX_RESOLUTION} px")
        need(self.resize <= MAX_RESOLUTION, "resize", f"must be at most {MAX_RESOLUTION} px")
        for key in ("train_images", "val_images", "randaugment_ops", "precise_bn_batches", "global_batch"):
            need(getattr(self, key) >= 0, key, "must be >= 0")
        need(self.global_batch % self.batch_size == 0, "global_batch",
             f"must be a multiple of batch_size ({self.batch_size}), or 0")
        need(not (self.global_batch and self.accum_steps != 1), "global_batch",
             f"give global_batch or accum_steps (= {self.accum_steps}), not both")
        need(self.warmup_epochs <= self.epochs, "warmup_epochs", f"must be <= epochs ({self.epochs})")
        need(0 < self.warmup_start_factor <= 1, "warmup_start_factor", "must be in (0, 1]")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
        need(0 <= self.drop_path < 1, "drop_path", "must be in [0, 1)")
        need(0 <= self.random_erasing <= 1, "random_erasing", "must be a probability in [0, 1]")
        need(0 < self.ema_decay < 1, "ema_decay", "must be in (0, 1)")
        need(0 < self.crop_scale_min <= 1, "crop_scale_min", "must be in (0, 1]")
        need(self.resize >= 0, "resize", "must be >= 0 (0 = native size)")
        need(self.proxy == "" or self.proxy in PROXIES, "proxy", f"must be '' or one of {sorted(PROXIES)}")
        need(0 < self.eval_crop_pct <= 1, "eval_crop_pct", "must be in (0, 1]")
        need(self.crop != "rrc" or self.resolution / self.eval_crop_pct <= MAX_RESOLUTION, "eval_crop_pct",
             f"evaluation resizes to resolution / eval_crop_pct, which must be at most {MAX_RESOLUTION} px")
        need(0 <= self.randaugment_magnitude <= 30, "randaugment_magnitude", "must be in [0, 30]")
        need(all(0 < b < 1 for b in self.betas), "betas", "must be two numbers in (0, 1)")
        need(0 < self.decay_factor <= 1, "decay_factor", "must be in (0, 1]")
        need(all(0 < e < self.epochs for e in self.decay_epochs), "decay_epochs",
             f"every decay epoch must be in (0, epochs={self.epochs})")
        need(list(self.decay_epochs) == sorted(self.decay_epochs), "decay_epochs", "must be increasing")
        need(self.schedule != "step" or all(e > self.warmup_epochs for e in self.decay_epochs), "decay_epochs",
             f"every decay epoch must come after the warm-up (warmup_epochs = {self.warmup_epochs}): the "
             "scheduler starts counting at its end, so an earlier one would never apply")
        need(self.schedule != "step" or bool(self.decay_epochs), "decay_epochs",
             "schedule = 'step' needs at least one decay epoch")
        for sub_name, keys in self.substitute.items():
            if not isinstance(keys, dict):
                raise ConfigError(f"recipe '{self.name}' key 'substitute.{sub_name}': must be a table of recipe keys")
            where = f"recipe '{self.name}' key 'substitute.{sub_name}'"
            checked = check_fields(keys, _SUB_HINTS, lambda msg, where=where: ConfigError(f"{where}: {msg}"))
            for key, v in checked.items():
                if any(isinstance(x, float) and not math.isfinite(x) for x in (v if isinstance(v, tuple) else (v,))):
                    raise ConfigError(f"{where}: key '{key}': must be a finite number, got {v!r}")

    def replace(self, **changes: Any) -> Recipe:
        unknown = sorted(set(changes) - set(KEYS))
        if unknown:
            raise ConfigError(f"recipe '{self.name}': unknown key(s) {unknown} (valid: {', '.join(KEYS)})")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def part(self, kind: type[P]) -> P:
        """One part of this recipe as its own frozen value (e.g. the data part, a cache key)."""
        return kind(**{f.name: getattr(self, f.name) for f in dataclasses.fields(kind)})

    def scaled_lr(self, global_batch: int) -> float:
        """The linear scaling rule (Goyal et al.): lr x global_batch / lr_batch."""
        return self.lr * global_batch / self.lr_batch

    def for_step(self, step_recipe: str | None, source: str | Path | None = None) -> Recipe:
        """The recipe a step trains with: this one, or the step's override (through this
        recipe's substitute table when it has one for that name), read from ``source`` (the
        roadmap's ``recipe_source``) when given, else from ``step_recipe`` itself."""
        if not step_recipe or step_recipe == self.name:
            return self
        other = load_recipe(source if source is not None else step_recipe)
        sub = self.substitute.get(step_recipe)
        if sub:
            other = other.replace(**sub)
            other = other.replace(name=f"{other.name}@{self.name}",
                                  description=f"{other.description} (as substituted by '{self.name}')")
        return other


KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Recipe))
_HINTS: dict[str, Any] = schema_hints(Recipe)
PARTS: tuple[type[RecipePart], ...] = tuple(b for b in Recipe.__mro__[1:] if issubclass(b, RecipePart)
                                           and b is not RecipePart)
NOT_IN_FINGERPRINT: tuple[str, ...] = tuple(f.name for part in PARTS if not part.fingerprinted
                                            for f in dataclasses.fields(part))
"""Recipe keys left out of a job's fingerprint: those of the parts that say so (``About``,
``Accumulation``)."""
_SUB_HINTS = {k: v for k, v in _HINTS.items() if k not in ("name", "substitute")}
"""What a ``[substitute.NAME]`` table may set, typed like the recipe's own keys (checked at load)."""


def builtin_recipes() -> list[str]:
    return builtin_names("recipes")


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A recipe name in ``ablations/recipes/`` (``quick``) or a path to a TOML file."""
    return resolve_builtin(name_or_path, what="recipe", folder="recipes")


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A built-in recipe by name (``quick``) or a TOML file by path; unknown keys are errors.
    ``base = "NAME|PATH"`` inherits (module docstring); without it every ``BUDGET_KEYS`` key
    must be in the file."""
    path = resolve_recipe_path(name_or_path)
    data, has_base = _merged(path, ())
    data.setdefault("name", path.stem)
    missing = [k for k in BUDGET_KEYS if k not in data] if not has_base else []
    why = (f"names no base and does not give the budget key(s) {', '.join(missing)} (without them it would be the "
           f"paper's {Recipe.epochs}-epoch {Recipe.resolution}-px recipe): add them, or start from a recipe with "
           f"e.g. base = \"quick\" (built-ins: {', '.join(builtin_recipes())})")
    try:
        recipe = Recipe(**data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" + (f"; also, the file {why}" if missing else "")) from None
    if missing:
        raise ConfigError(f"{path}: {why}")
    return recipe


def recipe_base(name_or_path: str | Path) -> Recipe | None:
    """The recipe a recipe file names as its ``base`` (resolved), or None without one."""
    path = resolve_recipe_path(name_or_path)
    base = read_toml(path, "recipe").get("base")
    return load_recipe(_base_path(path, base)) if isinstance(base, str) else None


def recipe_files(name_or_path: str | Path) -> list[Path]:
    """The recipe's file and its ``base`` chain's files, the recipe's own first (a run folder keeps
    a copy of them)."""
    files: list[Path] = []
    path: Path | None = resolve_recipe_path(name_or_path)
    while path is not None and path.resolve() not in files:
        files.append(path.resolve())
        base = read_toml(path, "recipe").get("base")
        path = _base_path(path, base) if isinstance(base, str) else None
    return files


def differences(recipe: Recipe, base: Recipe) -> dict[str, tuple[Any, Any]]:
    """``key -> (base value, recipe value)`` for every training key that differs."""
    a, b = base.to_dict(), recipe.to_dict()
    about = {f.name for f in dataclasses.fields(About)}
    return {k: (a[k], b[k]) for k in KEYS if k not in about and a[k] != b[k]}


def _base_path(path: Path, base: str) -> Path:
    """A bare name that is a built-in is that built-in; anything else a path from the file's folder."""
    bare = Path(base)
    if bare.suffix == "" and bare.parent == Path(".") and (RECIPES_DIR / f"{base}.toml").is_file():
        return RECIPES_DIR / f"{base}.toml"
    candidate = bare if bare.is_absolute() else path.parent / bare
    if not candidate.is_file():
        raise ConfigError(f"{path}: base = {base!r}: no built-in recipe of that name and no file {candidate} "
                          f"(built-ins: {', '.join(builtin_recipes())})")
    return candidate


def _track(table: Any, base: dict[str, Any], mine: dict[str, Any]) -> Any:
    """An inherited substitute table: a key it holds at the base's own value (it repeats the
    base's budget, as ``quick``'s ``train_images``) follows the file's new value of that key."""
    if not isinstance(table, dict):
        return table
    return {k: (mine[k] if k in mine and k in base and v == base[k] else v) for k, v in table.items()}


def _merged(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], bool]:
    """The file's keys over its base's (recursively), substitute tables merged; and whether it has a base."""
    if path.resolve() in chain:
        names = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"{path}: recipe bases form a cycle ({names}); one of them must not name a base")
    data = read_toml(path, "recipe")
    unknown = sorted(set(data) - set(KEYS) - {"base"})
    if unknown:
        raise ConfigError(f"{path}: unknown recipe key(s) {unknown} (valid: base, {', '.join(KEYS)})")
    base = data.pop("base", None)
    if base is None:
        return data, False
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base must be a recipe name or a path string, got {base!r}")
    inherited, _ = _merged(_base_path(path, base), (*chain, path.resolve()))
    inherited.pop("name", None)
    inherited.pop("description", None)
    subs = {k: _track(v, inherited, data) for k, v in inherited.get("substitute", {}).items()}
    mine = data.get("substitute", {})
    if isinstance(mine, dict):
        data["substitute"] = subs | {k: (subs.get(k, {}) | v if isinstance(v, dict) and isinstance(subs.get(k), dict)
                                         else v) for k, v in mine.items()}
    own = sorted(set(data) - {"name", "description", "substitute"})
    data.setdefault("description", f"recipe '{base}' with its own {', '.join(own) or 'nothing'}")
    return inherited | data, True


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able config (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


__all__ = ["BUDGET_KEYS", "KEYS", "NOT_IN_FINGERPRINT", "PARTS", "RECIPES_DIR", "About", "Accumulation",
           "Augmentation", "Budget", "DataPart", "Hardware", "Optimizer", "Recipe", "RecipePart", "Regularization",
           "Schedule", "builtin_recipes", "config_hash", "differences", "load_recipe", "recipe_base", "recipe_files"]
