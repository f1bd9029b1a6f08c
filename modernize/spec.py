"""The design space: one frozen, typed ``ArchSpec`` describes every network of the roadmap.

Like pycls, the architecture is data; unlike pycls there is no global config: a spec is an
immutable value, transforms return new specs, and the builder reads nothing else.

Conventions (ResNet v1.5 and ConvNeXt agree on them):

* ``dims`` are the block input/output channels per stage. The block's hidden width is
  ``dims // expansion`` for a bottleneck (ResNet: 256 -> 64 -> 256) and
  ``dims * expansion`` for an inverted bottleneck (ConvNeXt: 96 -> 384 -> 96).
* With ``downsample="in_block"`` the first block of stages 2.. strides on its spatial
  (kxk) conv, as in torchvision's ResNet v1.5, and takes a 1x1 projection shortcut
  (conv + norm) wherever its input and output shapes differ.
* With ``downsample="separate"`` a norm + 2x2 stride-2 conv sits between stages and
  blocks never stride (ConvNeXt).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from ._typing import coerce
from .errors import SpecError
from .kinds import PLACES, get_kind

StemKind = Literal["conv_pool", "patchify"]
BlockKind = Literal["bottleneck", "inverted"]
SpatialPos = Literal["middle", "top"]
KindArgs = tuple[tuple[str, Any], ...]
"""A kind's parameters as sorted ``(name, value)`` pairs (hashable; a TOML table in files)."""
Placement = Literal["every_conv", "one"]
DownsampleKind = Literal["in_block", "separate"]
Groups = int | Literal["depthwise"]


@dataclass(frozen=True)
class Component:
    """A block component of ``ArchSpec.components``: a registered kind (``modernize.kinds``) at a
    place of the residual branch, with the kind's parameters. Written ``"se"``, ``"se@end"``
    or ``{kind = "se", at = "after_spatial", reduction = 8}``."""

    kind: str
    at: str
    args: KindArgs = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at, **dict(self.args)}

    @property
    def module_name(self) -> str:
        """Its name in the block's modules (``se_end``): unique, since a kind appears once per place."""
        return f"{self.kind}_{self.at}"


def _args(value: Any, field: str) -> Any:
    """A TOML table (or pairs) of kind parameters -> sorted, hashable pairs."""
    if isinstance(value, dict):
        value = list(value.items())
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) for p in value):
        raise SpecError(f"spec field '{field}': expected a table of parameters, got {value!r}")
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in value))


def _component(value: Any) -> Component:
    if isinstance(value, Component):
        return value
    if isinstance(value, str):
        kind, _, at = value.partition("@")
        value = {"kind": kind} | ({"at": at} if at else {})
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        raise SpecError(f"spec field 'components': expected \"kind\", \"kind@place\" or a table with a 'kind', "
                        f"got {value!r}")
    args = {k: v for k, v in value.items() if k not in ("kind", "at")}
    kind = get_kind("component", value["kind"], "components")
    at = value.get("at", kind.place)
    if not isinstance(at, str) or at not in PLACES:
        raise SpecError(f"spec field 'components': place {at!r} of '{kind.name}' is not one of {', '.join(PLACES)}")
    return Component(kind.name, at, _args(kind.check_args(args, "components"), "components"))


_NEW_FIELDS = ("act_args", "norm_args", "components")
"""Fields that ``to_dict`` leaves out at their default: the paper's specs (their records and
job fingerprints) read exactly as before these fields existed."""


MAX_STAGES, MAX_DEPTH, MAX_WIDTH, MAX_SMALL = 16, 1024, 65536, 255
"""Upper bounds of a spec: ConvNeXt-XXL has 4 stages, 30 blocks, 3072 channels; a ResNet-200 36
blocks; anything past these bounds is a typo (1e9 blocks would build for hours)."""


@dataclass(frozen=True)
class ArchSpec:
    """Every knob the paper turns, and the few it leaves fixed but a user may want."""

    # --- stem -------------------------------------------------------------------------
    stem: StemKind = "conv_pool"
    """'conv_pool': kxk conv (no bias) -> norm -> act -> 3x3/2 max-pool (ResNet).
    'patchify': one kxk conv with stride k and bias, optionally followed by a norm."""
    stem_width: int = 64
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: bool = True
    """Only for 'conv_pool': the 3x3 stride-2 max-pool."""
    stem_norm: bool = True
    # --- stages -----------------------------------------------------------------------
    depths: tuple[int, ...] = (3, 4, 6, 3)
    dims: tuple[int, ...] = (256, 512, 1024, 2048)
    # --- block ------------------------------------------------------------------------
    block: BlockKind = "bottleneck"
    expansion: int = 4
    spatial_pos: SpatialPos = "middle"
    """'middle': 1x1 -> kxk -> 1x1 (ResNet). 'top': kxk -> 1x1 -> 1x1 (ConvNeXt)."""
    groups: Groups = 1
    """Groups of the kxk conv; 'depthwise' means one group per channel."""
    kernel_size: int = 3
    act: str = "relu"
    """A registered activation kind (``modernize.kinds``): 'relu', 'gelu', 'silu', 'hardswish', ..."""
    act_args: KindArgs = ()
    """Parameters of the activation kind (a TOML table)."""
    acts: Placement = "every_conv"
    """'every_conv': after the first two convs and after the residual add (ResNet).
    'one': a single activation between the two 1x1 convs (needs spatial_pos='top')."""
    norm: str = "batch"
    """A registered norm kind: 'batch': BatchNorm. 'layer': LayerNorm over channels at each
    position, eps 1e-6. 'group': GroupNorm (``norm_args = {groups = 32}``, the default)."""
    norm_args: KindArgs = ()
    """Parameters of the norm kind (a TOML table)."""
    norms: Placement = "every_conv"
    """'every_conv': a norm after each conv. 'one': only after the kxk conv (needs 'top')."""
    conv_bias: bool = False
    """Bias on the block's convs and the projection shortcut (off while a BN follows them)."""
    downsample: DownsampleKind = "in_block"
    layer_scale: float = 0.0
    """Init value of the per-channel residual scale; 0 disables it (no parameter)."""
    drop_path: float = 0.0
    """Stochastic-depth rate of the last block; linear from 0 over the blocks."""
    components: tuple[Component, ...] = ()
    """Block components (``modernize.kinds.PLACES``), in order; e.g. ``["se"]`` adds SE-ResNet's
    squeeze-and-excitation at the end of every residual branch."""
    init_std: float = 0.02
    """Std of the truncated-normal init of every conv and linear weight (ConvNeXt's 0.02).
    Proxy scales may change it by a rule applied to every step (``ProxyScale.init``)."""
    # --- head -------------------------------------------------------------------------
    head_norm: bool = False
    num_classes: int = 1000
    in_chans: int = 3

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("act_args", "norm_args"):
                value = _args(value, f.name)
            elif f.name == "components" and isinstance(value, (list, tuple)):
                value = tuple(_component(c) for c in value)
            try:
                value = coerce(value, _HINTS[f.name])
            except TypeError as exc:
                raise SpecError(f"spec field '{f.name}': {exc}") from None
            object.__setattr__(self, f.name, value)
        self._validate()
        self._check_kinds()

    def _check_kinds(self) -> None:
        """Every kind is registered, takes these parameters, and fits every width it sees."""
        act = get_kind("act", self.act, "act")
        object.__setattr__(self, "act_args", _args(act.check_args(dict(self.act_args), "act_args"), "act_args"))
        norm = get_kind("norm", self.norm, "norm")
        object.__setattr__(self, "norm_args", _args(norm.check_args(dict(self.norm_args), "norm_args"), "norm_args"))
        widths = {self.stem_width, *self.dims} | (set(self.hidden_dims) if self.norms == "every_conv" else set())
        for c in sorted(widths):
            why = norm.why_not(c, dict(self.norm_args))
            if why:
                raise SpecError(f"spec field 'norm_args': norm '{self.norm}': {why} (every norm width: "
                                f"{', '.join(map(str, sorted(widths)))})")
        seen = set()
        for comp in self.components:
            if comp.module_name in seen:
                raise SpecError(f"spec field 'components': '{comp.kind}' appears twice at '{comp.at}'")
            seen.add(comp.module_name)
            kind = get_kind("component", comp.kind, "components")
            for c in sorted(self.place_widths(comp.at)):
                why = kind.why_not(c, dict(comp.args))
                if why:
                    raise SpecError(f"spec field 'components': '{comp.kind}' at '{comp.at}': {why}")

    def _validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise SpecError(msg)

        need(len(self.depths) >= 1, "spec field 'depths': need at least one stage")
        need(len(self.depths) == len(self.dims),
             f"spec fields 'depths' {self.depths} and 'dims' {self.dims} must have the same length")
        need(all(d >= 1 for d in self.depths), f"spec field 'depths': every depth must be >= 1, got {self.depths}")
        need(all(d >= 1 for d in self.dims), f"spec field 'dims': every dim must be >= 1, got {self.dims}")
        for name in ("stem_width", "stem_kernel", "stem_stride", "expansion", "num_classes", "in_chans"):
            need(getattr(self, name) >= 1, f"spec field '{name}': must be >= 1, got {getattr(self, name)}")
        # Sizes far past any network of the design space: a typo, refused before a model is built.
        need(len(self.depths) <= MAX_STAGES and all(d <= MAX_DEPTH for d in self.depths),
             f"spec field 'depths': at most {MAX_STAGES} stages of at most {MAX_DEPTH} blocks, got {self.depths}")
        for name, values in (("dims", self.dims), ("stem_width", (self.stem_width,)),
                             ("num_classes", (self.num_classes,)), ("in_chans", (self.in_chans,))):
            need(all(v <= MAX_WIDTH for v in values),
                 f"spec field '{name}': at most {MAX_WIDTH}, got {getattr(self, name)}")
        for name in ("stem_kernel", "stem_stride", "expansion", "kernel_size"):
            need(getattr(self, name) <= MAX_SMALL,
                 f"spec field '{name}': at most {MAX_SMALL}, got {getattr(self, name)}")
        need(self.kernel_size >= 1 and self.kernel_size % 2 == 1,
             f"spec field 'kernel_size': must be a positive odd integer (3, 5, 7, ...), got {self.kernel_size}")
        need(0.0 <= self.drop_path < 1.0, f"spec field 'drop_path': must be in [0, 1), got {self.drop_path}")
        need(math.isfinite(self.init_std) and self.init_std > 0.0,
             f"spec field 'init_std': must be a positive number, got {self.init_std}")
        need(math.isfinite(self.layer_scale) and self.layer_scale >= 0.0,
             f"spec field 'layer_scale': must be a finite number >= 0 (0 = off), got {self.layer_scale}")
        if self.block == "bottleneck":
            need(all(d % self.expansion == 0 for d in self.dims),
                 f"spec field 'dims' {self.dims}: a bottleneck needs dims divisible by expansion {self.expansion}")
        if isinstance(self.groups, int):
            need(self.groups >= 1, f"spec field 'groups': must be >= 1 or 'depthwise', got {self.groups}")
            for c in set(self.spatial_dims) | ({self.stem_width} if self.spatial_pos == "top" else set()):
                need(c % self.groups == 0,
                     f"spec field 'groups': {self.groups} does not divide the kxk conv's {c} channels")
        need(self.acts == "every_conv" or self.spatial_pos == "top",
             "spec field 'acts'='one' needs spatial_pos='top' (one activation between the two 1x1 convs)")
        need(self.norms == "every_conv" or self.spatial_pos == "top",
             "spec field 'norms'='one' needs spatial_pos='top' (one norm after the depthwise conv)")
        if self.downsample == "separate":
            need(self.stem_width == self.dims[0],
                 f"spec field 'downsample'='separate' needs stem_width == dims[0] "
                 f"(blocks have no projection), got {self.stem_width} and {self.dims[0]}")

    # --- derived ----------------------------------------------------------------------
    @property
    def hidden_dims(self) -> tuple[int, ...]:
        """The width inside each stage's blocks (between the two 1x1 convs)."""
        if self.block == "bottleneck":
            return tuple(d // self.expansion for d in self.dims)
        return tuple(d * self.expansion for d in self.dims)

    @property
    def spatial_dims(self) -> tuple[int, ...]:
        """Channels the kxk conv of each stage's later blocks sees: the hidden width in the
        middle position, the block dim at the top (a stage's first block sees its input dim)."""
        return self.hidden_dims if self.spatial_pos == "middle" else self.dims

    def place_widths(self, place: str) -> set[int]:
        """The channel counts a block component at ``place`` sees (``modernize.kinds.PLACES``)."""
        if place == "end":
            return set(self.dims)
        if place == "before_last" or self.spatial_pos == "middle":
            return set(self.hidden_dims)
        return {self.stem_width, *self.dims}  # kxk conv on top: a stage's first block sees its input

    @property
    def stem_total_stride(self) -> int:
        pool = 2 if (self.stem == "conv_pool" and self.stem_pool) else 1
        return self.stem_stride * pool

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with some fields changed (validated like a new spec)."""
        unknown = sorted(set(changes) - set(_HINTS))
        if unknown:
            raise SpecError(f"unknown spec field(s) {unknown}; valid: {sorted(_HINTS)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in _NEW_FIELDS:
                if v != f.default:
                    out[f.name] = [c.to_dict() for c in v] if f.name == "components" else dict(v)
            else:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        unknown = sorted(set(data) - set(_HINTS))
        if unknown:
            raise SpecError(f"unknown spec field(s) {unknown}; valid: {sorted(_HINTS)}")
        return cls(**data)

    def diff(self, other: ArchSpec) -> dict[str, tuple[Any, Any]]:
        """Fields whose value differs: ``{name: (self_value, other_value)}``."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name))
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)}


_HINTS: dict[str, Any] = typing.get_type_hints(ArchSpec)
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ArchSpec))


def _resnet(depths: tuple[int, ...]) -> ArchSpec:
    return ArchSpec(depths=depths)


def _convnext(depths: tuple[int, ...], dims: tuple[int, ...]) -> ArchSpec:
    return ArchSpec(
        stem="patchify", stem_width=dims[0], stem_kernel=4, stem_stride=4, stem_pool=False,
        stem_norm=True, depths=depths, dims=dims, block="inverted", spatial_pos="top",
        groups="depthwise", kernel_size=7, act="gelu", acts="one", norm="layer", norms="one",
        conv_bias=True, downsample="separate", layer_scale=1e-6, head_norm=True,
    )


BASE_SPECS: dict[str, ArchSpec] = {
    "resnet50": _resnet((3, 4, 6, 3)),
    "resnet101": _resnet((3, 4, 23, 3)),
    "resnet152": _resnet((3, 8, 36, 3)),
    "resnet200": _resnet((3, 24, 36, 3)),
    "convnext_tiny": _convnext((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnext_small": _convnext((3, 3, 27, 3), (96, 192, 384, 768)),
    "convnext_base": _convnext((3, 3, 27, 3), (128, 256, 512, 1024)),
    "convnext_large": _convnext((3, 3, 27, 3), (192, 384, 768, 1536)),
}
"""Named starting points for roadmaps (``base = "resnet50"``) and the torchvision twins."""


def base_spec(name: str) -> ArchSpec:
    try:
        return BASE_SPECS[name]
    except KeyError:
        raise SpecError(f"unknown base spec {name!r}; valid: {', '.join(BASE_SPECS)}") from None


__all__ = ["ArchSpec", "BASE_SPECS", "Component", "FIELDS", "base_spec"]
