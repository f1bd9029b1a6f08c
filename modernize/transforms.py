"""The roadmap of "A ConvNet for the 2020s" (Liu et al., CVPR 2022), one transform per step.

Each transform is a pure function ``ArchSpec -> ArchSpec`` registered under the name a
roadmap file uses, with the paper's phase (:data:`PHASES`) and the paper's one-line reason for
the step: the single source that ``describe``, the report page and the notebooks read through
:func:`phase_of` and :func:`reason_of`. Its docstring says what changes. A transform refuses a
spec it cannot meaningfully change (a step it needs is missing, or it would change nothing)
with a ``PreconditionError``.

Add your own with ``@register_transform("my_step", label="...")`` and name it in a roadmap.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ._typing import coerce
from .errors import ConfigError, PreconditionError, SpecError
from .spec import ArchSpec


@dataclass(frozen=True)
class Phase:
    """One of the paper's design phases (its Figure 2 groups the roadmap's rows under them)."""

    name: str
    section: str
    """Section of the paper that describes it."""
    summary: str


MACRO, RESNEXT, INVERTED, LARGE_KERNEL, MICRO = PHASES = (
    Phase("macro design", "2.2", "Swin Transformer's stage compute ratio and patchify stem"),
    Phase("ResNeXt-ify", "2.3", "grouped (depthwise) convolution, the saving spent on width"),
    Phase("inverted bottleneck", "2.4", "a Transformer MLP's wide hidden layer"),
    Phase("large kernel", "2.5", "the spatial conv moved up, then grown to Swin's 7x7 window"),
    Phase("micro design", "2.6", "a Transformer block's activation, norm and downsampling choices"),
)
"""The paper's five phases, in roadmap order."""
TRAINING = Phase("training techniques", "2.1", "the modern training recipe (and its layer scale)")
"""Not one of the five architecture phases: the recipe's part of the roadmap."""


@dataclass(frozen=True)
class Transform:
    name: str
    fn: Callable[..., ArchSpec]
    label: str
    phase: Phase | None = None
    """The paper's phase; None for a design-space or user transform outside the paper's roadmap."""
    reason: str = ""
    """The paper's one-line reason for the step (why, not what)."""

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.fn.__doc__ or "")

    @property
    def params(self) -> dict[str, tuple[Any, Any]]:
        """Keyword parameters: ``{name: (type hint, default)}``."""
        hints = typing.get_type_hints(self.fn)
        sig = inspect.signature(self.fn)
        return {p.name: (hints.get(p.name, Any), p.default) for p in list(sig.parameters.values())[1:]}

    def __call__(self, spec: ArchSpec, **params: Any) -> ArchSpec:
        checked = self.check(params)
        try:
            return self.fn(spec, **checked)
        except SpecError as exc:
            if isinstance(exc, PreconditionError):
                raise
            raise SpecError(f"transform '{self.name}': {exc}") from None

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters coerced to the signature's types; an unknown, missing or ill-typed one is
        a ``ConfigError`` (a mistake in the file, found before any spec is built)."""
        known = self.params
        for key in params:
            if key not in known:
                valid = ", ".join(known) or "none"
                raise ConfigError(f"transform '{self.name}' has no parameter '{key}' (valid: {valid})")
        missing = [k for k, (_, default) in known.items() if default is inspect.Parameter.empty and k not in params]
        if missing:
            raise ConfigError(f"apply: transform '{self.name}' needs parameter(s) {', '.join(map(repr, missing))} "
                              f"(given: {', '.join(params) or 'none'})")
        checked = {}
        for key, value in params.items():
            try:
                checked[key] = coerce(value, known[key][0])
            except TypeError as exc:
                raise ConfigError(f"transform '{self.name}' parameter '{key}': {exc}") from None
        return checked


TRANSFORMS: dict[str, Transform] = {}
"""The registry: roadmap files refer to transforms by these names."""


def register_transform(name: str, *, label: str, phase: Phase | None = None, reason: str = ""
                       ) -> Callable[[Callable[..., ArchSpec]], Callable[..., ArchSpec]]:
    """Register ``fn(spec, *, **params) -> spec`` as transform ``name`` (paper label ``label``,
    the paper's ``phase`` and one-line ``reason``, if it has them)."""

    def deco(fn: Callable[..., ArchSpec]) -> Callable[..., ArchSpec]:
        old = TRANSFORMS.get(name)
        # The same definition imported again (a reloaded user module) replaces the old one.
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"transform {name!r} is already registered")
        TRANSFORMS[name] = Transform(name, fn, label, phase, reason)
        return fn

    return deco


def get_transform(name: str) -> Transform:
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise ConfigError(f"unknown transform '{name}' (valid: {', '.join(TRANSFORMS)})") from None


class _HasTransforms(Protocol):
    @property
    def transforms(self) -> tuple[tuple[str, dict[str, Any]], ...]: ...


def _transform_of(step: str | _HasTransforms) -> Transform | None:
    """A transform name's transform; for a roadmap ``Step``, its first registered transform (a
    step that applies several, like ResNet-200's stage ratio + width, sits where it starts)."""
    if isinstance(step, str):
        return TRANSFORMS.get(step)
    found = [TRANSFORMS[name] for name, _ in step.transforms if name in TRANSFORMS]
    return found[0] if found else None


def phase_of(step: str | _HasTransforms) -> Phase | None:
    """The paper's phase of a transform (by name) or of a roadmap ``Step`` (its transform's);
    None for a step without one (the base network, a recipe-only row, a user transform)."""
    found = _transform_of(step)
    return found.phase if found else None


def reason_of(step: str | _HasTransforms) -> str:
    """The paper's one-line reason for a transform (by name) or a roadmap ``Step``; '' if none."""
    found = _transform_of(step)
    return found.reason if found else ""


def _require(ok: bool, step: str, why: str) -> None:
    if not ok:
        raise PreconditionError(f"'{step}' {why}")


# --- Macro design (Section 2.2) ------------------------------------------------------------

@register_transform("stage_ratio", label="stage ratio", phase=MACRO,
                    reason=("Swin-T puts most of its compute in the third stage (1:1:3:1); ResNet-50's 3:4:6:3 moves "
                            "towards it"))
def stage_ratio(spec: ArchSpec, *, depths: tuple[int, ...] = (3, 3, 9, 3)) -> ArchSpec:
    """Changing stage compute ratio: blocks per stage (3, 4, 6, 3) -> (3, 3, 9, 3).

    Swin-T's 1:1:3:1 ratio moves compute into the third stage."""
    _require(len(depths) == len(spec.depths), "stage_ratio",
             f"needs {len(spec.depths)} depths (one per stage), got {len(depths)}")
    _require(depths != spec.depths, "stage_ratio", f"changes nothing: depths are already {depths}")
    return spec.replace(depths=depths)


@register_transform("patchify_stem", label="patchify stem", phase=MACRO,
                    reason=("a ViT cuts the image into non-overlapping patches; a 4x4 stride-4 conv does the same, for "
                            "fewer FLOPs"))
def patchify_stem(spec: ArchSpec, *, patch: int = 4) -> ArchSpec:
    """Changing stem to "Patchify": the 7x7/2 conv + max-pool becomes one 4x4 stride-4 conv.

    Non-overlapping patches, like a ViT's. No norm follows, as in the authors' step code;
    the final step adds one."""
    _require(spec.stem != "patchify", "patchify_stem", "changes nothing: the stem is already patchify")
    return spec.replace(stem="patchify", stem_kernel=patch, stem_stride=patch, stem_pool=False, stem_norm=False)


# --- ResNeXt-ify (Section 2.3) ---------------------------------------------------------------

@register_transform("depthwise", label="depthwise conv", phase=RESNEXT,
                    reason=("depthwise conv mixes space per channel like self-attention's weighted sum, and frees FLOPs"
                            " for width"))
def depthwise(spec: ArchSpec) -> ArchSpec:
    """ResNeXt-ify: the 3x3 conv becomes depthwise (groups = channels); the stride stays on it.

    Depthwise conv mixes only space, like self-attention's weighted sum per channel;
    FLOPs and accuracy drop, and the next step spends the saving on width."""
    _require(spec.groups != "depthwise", "depthwise", "changes nothing: the kxk conv is already depthwise")
    return spec.replace(groups="depthwise")


@register_transform("widen", label="wider", phase=RESNEXT,
                    reason="spend the FLOPs that depthwise conv saved on Swin-T's width of 96 channels")
def widen(spec: ArchSpec, *, width: int = 96) -> ArchSpec:
    """ResNeXt-ify: increase the network width to Swin-T's 96 channels (stem included).

    Every width is scaled by ``width / stem_width`` (64 -> 96 is x1.5); it must divide exactly."""
    old = spec.stem_width
    _require(width != old, "widen", f"changes nothing: the width is already {width}")
    bad = [d for d in spec.dims if d * width % old]
    _require(not bad, "widen", f"cannot scale dims {spec.dims} by {width}/{old} to whole channels")
    return spec.replace(stem_width=width, dims=tuple(d * width // old for d in spec.dims))


# --- Inverted bottleneck (Section 2.4) -------------------------------------------------------

@register_transform("inverted_bottleneck", label="inverted bottleneck", phase=INVERTED,
                    reason=("a Transformer's MLP is 4x wider inside than outside; inverting the block also shrinks the "
                            "downsampling shortcuts"))
def inverted_bottleneck(spec: ArchSpec) -> ArchSpec:
    """Inverted bottleneck: the block's hidden layer becomes 4x wider than its input, as in a
    Transformer's MLP. Block dims become the old bottleneck widths (384 -> 96 -> 384 turns
    into 96 -> 384 -> 96), so the downsampling shortcuts shrink and FLOPs drop."""
    _require(spec.block == "bottleneck", "inverted_bottleneck", "changes nothing: the block is already inverted")
    return spec.replace(block="inverted", dims=spec.hidden_dims)


# --- Large kernel sizes (Section 2.5) --------------------------------------------------------

@register_transform("move_up_dwconv", label="move up depthwise conv", phase=LARGE_KERNEL,
                    reason=("attention comes before the MLP in a Transformer; on top, a large kernel runs on the narrow"
                            " input"))
def move_up_dwconv(spec: ArchSpec) -> ArchSpec:
    """Moving up depthwise conv layer: kxk depthwise -> 1x1 expand -> 1x1 reduce, like a
    Transformer's attention before its MLP. The costly 1x1s keep the work; the large kernel
    of the next step then runs on the narrow input."""
    _require(spec.groups == "depthwise", "move_up_dwconv", "needs 'depthwise' first (the kxk conv is not depthwise)")
    _require(spec.block == "inverted", "move_up_dwconv",
             "needs 'inverted_bottleneck' first (the block is a bottleneck)")
    _require(spec.spatial_pos != "top", "move_up_dwconv", "changes nothing: the depthwise conv is already on top")
    return spec.replace(spatial_pos="top")


@register_transform("kernel_size", label="kernel size", phase=LARGE_KERNEL,
                    reason="Swin's attention sees 7x7 windows; larger kernels help up to 7x7, then saturate")
def kernel_size(spec: ArchSpec, *, kernel_size: int = 7) -> ArchSpec:
    """Increasing the kernel size: 3x3 -> 7x7 (5, 9, 11 explored). Gains saturate at 7,
    Swin's window size. Padding is k // 2, so the kernel must be odd."""
    _require(kernel_size != spec.kernel_size, "kernel_size", f"changes nothing: the kernel is already {kernel_size}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise SpecError(f"kernel_size must be a positive odd integer (3, 5, 7, ...), got {kernel_size}")
    return spec.replace(kernel_size=kernel_size)


# --- Micro design (Section 2.6) --------------------------------------------------------------

@register_transform("gelu", label="ReLU -> GELU", phase=MICRO,
                    reason="Transformers (BERT, GPT-2, ViT) use GELU; in a ConvNet it matches ReLU")
def gelu(spec: ArchSpec) -> ArchSpec:
    """Replacing ReLU with GELU everywhere, as BERT, GPT-2 and ViT use; accuracy is unchanged."""
    _require(spec.act != "gelu", "gelu", "changes nothing: the activation is already GELU")
    return spec.replace(act="gelu")


@register_transform("fewer_activations", label="fewer activations", phase=MICRO,
                    reason="a Transformer block has one activation, in its MLP; one GELU per block is enough")
def fewer_activations(spec: ArchSpec) -> ArchSpec:
    """Fewer activation functions: one GELU between the two 1x1 convs, none after the add,
    like a Transformer block's MLP."""
    _require(spec.spatial_pos == "top", "fewer_activations", "needs 'move_up_dwconv' first (two adjacent 1x1 convs)")
    _require(spec.acts != "one", "fewer_activations", "changes nothing: the block already has one activation")
    return spec.replace(acts="one")


@register_transform("fewer_norms", label="fewer norms", phase=MICRO,
                    reason="a Transformer block has fewer norms; one before the 1x1 convs is enough")
def fewer_norms(spec: ArchSpec) -> ArchSpec:
    """Fewer normalization layers: one norm, after the depthwise conv; those after the 1x1
    convs go. The shortcut projection keeps its norm."""
    _require(spec.spatial_pos == "top", "fewer_norms", "needs 'move_up_dwconv' first (the norm follows the top conv)")
    _require(spec.norms != "one", "fewer_norms", "changes nothing: the block already has one norm")
    return spec.replace(norms="one")


@register_transform("bn_to_ln", label="BN -> LN", phase=MICRO,
                    reason=("Transformers use LayerNorm; with the other changes in place it trains as well as BN, "
                            "slightly better"))
def bn_to_ln(spec: ArchSpec) -> ArchSpec:
    """Substituting BN with LN: every BatchNorm becomes a LayerNorm over channels (eps 1e-6).
    Convs that fed a BN had no bias; they get one now."""
    _require(spec.norm != "layer", "bn_to_ln", "changes nothing: the norms are already LayerNorm")
    return spec.replace(norm="layer", norm_args=(), conv_bias=True)


@register_transform("separate_downsampling", label="separate d.s. conv", phase=MICRO,
                    reason=("Swin downsamples between stages with a separate layer; norms where the resolution changes "
                            "keep training stable"))
def separate_downsampling(spec: ArchSpec) -> ArchSpec:
    """Separate downsampling layers: blocks no longer stride; between stages a norm then a
    2x2 stride-2 conv. Norms after the stem and after global pooling keep training stable
    (the paper saw it diverge without them)."""
    _require(spec.downsample != "separate", "separate_downsampling",
             "changes nothing: downsampling is already separate")
    _require(spec.stem_width == spec.dims[0], "separate_downsampling",
             f"needs 'inverted_bottleneck' first (stem width {spec.stem_width} must equal the first "
             f"stage's dim {spec.dims[0]}: blocks lose their projection shortcut)")
    return spec.replace(downsample="separate", stem_norm=True, head_norm=True)


@register_transform("layer_scale", label="layer scale", phase=TRAINING,
                    reason=("CaiT's layer scale lets deep residual networks start close to the identity; part of the "
                            "paper's training recipe"))
def layer_scale(spec: ArchSpec, *, init: float = 1e-6) -> ArchSpec:
    """Layer scale (CaiT): a learnable per-channel scale on each residual branch, init 1e-6.
    Official ConvNeXt uses it; the authors' intermediate steps did not (0 turns it off)."""
    _require(init != spec.layer_scale, "layer_scale", f"changes nothing: layer scale is already {init}")
    return spec.replace(layer_scale=init)


# --- The open design space (modernize.kinds) -------------------------------------------------

@register_transform("act", label="activation")
def act(spec: ArchSpec, *, kind: str, args: dict | None = None) -> ArchSpec:
    """Every activation becomes a registered activation kind (``silu``, ``hardswish``, a user's
    own), with the kind's parameters in ``args``."""
    new = spec.replace(act=kind, act_args=args or {})
    _require(new != spec, "act", f"changes nothing: the activation is already {kind!r}")
    return new


@register_transform("norm", label="norm")
def norm(spec: ArchSpec, *, kind: str, args: dict | None = None) -> ArchSpec:
    """Every norm becomes a registered norm kind (``group``, a user's own), with the kind's
    parameters in ``args`` (e.g. ``{groups = 8}``). Conv biases stay as they are."""
    new = spec.replace(norm=kind, norm_args=args or {})
    _require(new != spec, "norm", f"changes nothing: the norm is already {kind!r}")
    return new


@register_transform("add_block_component", label="block component")
def add_block_component(spec: ArchSpec, *, kind: str, at: str = "", args: dict | None = None) -> ArchSpec:
    """Insert a registered block component (``se``, ``grn``, a user's own) in every block, at
    ``at`` (``after_spatial``, ``before_last`` or ``end``; default: the kind's own place)."""
    return spec.replace(components=(*spec.components, {"kind": kind, **({"at": at} if at else {}), **(args or {})}))


@register_transform("remove_block_component", label="remove block component")
def remove_block_component(spec: ArchSpec, *, kind: str, at: str = "") -> ArchSpec:
    """Remove a block component (every place, or only ``at``)."""
    kept = tuple(c for c in spec.components if not (c.kind == kind and (not at or c.at == at)))
    _require(kept != spec.components, "remove_block_component", f"changes nothing: no '{kind}' component")
    return spec.replace(components=kept)


__all__ = ["PHASES", "TRAINING", "TRANSFORMS", "Phase", "Transform", "get_transform", "phase_of", "reason_of",
           "register_transform"]
