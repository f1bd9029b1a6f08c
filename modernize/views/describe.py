"""The teaching view (``run_ablation.py describe``): what each step of a roadmap changed.

Everything is derived, nothing is written per step: the plain-words list comes from the
spec difference between a step and its parent (one phrase generator per spec field), the
block drawings come from walking the modules of the built block, and the per-stage
parameter / MAC change comes from a two-blocks-per-stage copy of the spec, counted per module
the way fvcore counts (conv + linear MACs) and scaled by depth (every block after a stage's
first is identical).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ConfigError
from ..kinds import PLACES, get_kind, kind_of
from ..model import build_model
from ..roadmap import Roadmap, Step
from ..spec import ArchSpec
from .layer_view import LAYOUT_ONLY, block_view, module_view

WIDTH = 100
"""Every line of the output fits a 100-column terminal."""

_STEM_FIELDS = ("stem", "stem_width", "stem_kernel", "stem_stride", "stem_pool", "stem_norm", "in_chans")


# --- drawing modules -------------------------------------------------------------------------

def draw_module(m: nn.Module) -> str | None:
    """One token per layer: ``3x3/2 64->64``, ``dw 7x7 96``, ``BN``, ``LN``, ``GELU`` ...; a
    module of a registered kind draws as the kind's token (``SE``, ``GN``, a user's own)."""
    if isinstance(m, LAYOUT_ONLY):
        return None
    if isinstance(m, nn.Sequential) and kind_of(m) is None:
        return " | ".join(t for t in (draw_module(c) for c in m) if t) or None
    return module_view("", m).token


def draw_block(block: nn.Module) -> str:
    """The residual branch in order, then the shortcut and what follows the add: the block's
    layer view (:func:`modernize.views.layer_view.block_view`), the diagrams' too."""
    view = block_view(block)
    tokens = [v.token for v in view.branch]
    shortcut = " | ".join(v.token for v in view.shortcut)
    text = " | ".join(tokens) + (f"  + proj({shortcut})" if shortcut else "  + x")
    return text + "".join(f" -> {v.token}" for v in view.after_add)


@dataclass(frozen=True)
class Drawing:
    stem: str
    downsample: str | None
    """The separate downsampling layer before stage 2, if any."""
    block: str
    head: str
    linear_1x1: bool
    """The 1x1 convs run as ``nn.Linear`` on channels-last tensors (ConvNeXt form)."""


def _shallow(spec: ArchSpec) -> ArchSpec:
    return spec.replace(depths=tuple(min(d, 2) for d in spec.depths), drop_path=0.0)


@lru_cache(maxsize=64)
def _shallow_model(spec: ArchSpec) -> nn.Module:
    """The two-blocks-per-stage copy on the meta device (no weights allocated or
    initialised: drawing and counting need shapes only)."""
    return build_model(_shallow(spec), device="meta").eval()


def drawing(spec: ArchSpec) -> Drawing:
    """Stem, the first block of stage 2 (it shows the downsampling; stage 1 if only one) and head."""
    model = _shallow_model(spec)
    stage = model.stages[1 if len(model.stages) > 1 else 0]
    block = stage.blocks[0]
    ds = draw_module(stage.downsample)
    return Drawing(stem=draw_module(model.stem) or "", downsample=ds, block=draw_block(block),
                   head=draw_module(model.head.pool) + " | " + " | ".join(
                       t for t in (draw_module(model.head.norm), f"fc {model.head.fc.in_features}->"
                                   f"{model.head.fc.out_features}") if t),
                   linear_1x1=any(isinstance(m, nn.Linear) for m in block.modules()))


# --- per-stage counts --------------------------------------------------------------------------

@dataclass(frozen=True)
class PartCount:
    name: str
    params: int
    macs: int


def module_macs(model: nn.Module, resolution: int) -> dict[str, int]:
    """Conv + linear multiply-accumulates of each conv / linear module for one image, from
    ``torch.utils.flop_counter`` (2 FLOPs per MAC) on a shape-only forward: on the meta
    device it takes milliseconds instead of an fvcore trace's seconds, with the same numbers
    (the tests check both agree)."""
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, model.spec.in_chans, resolution, resolution, device=device))
    root = type(model).__name__ + "."
    flops = {k.removeprefix(root): sum(v.values()) for k, v in counter.get_flop_counts().items()}
    return {name: flops.get(name, 0) // 2 for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


@lru_cache(maxsize=64)
def stage_counts(spec: ArchSpec, resolution: int = 224) -> tuple[PartCount, ...]:
    """Params and conv+linear MACs of stem, each stage (its downsampling layer included) and
    head, at ``resolution``. Exact: a stage is its first block plus (depth - 1) copies of
    the second, which every later block equals."""
    model = _shallow_model(spec)
    per_module = module_macs(model, resolution)

    def macs(prefix: str) -> int:
        return sum(v for k, v in per_module.items() if k == prefix or k.startswith(prefix + "."))

    def params(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    parts = [PartCount("stem", params(model.stem), macs("stem"))]
    for i, depth in enumerate(spec.depths):
        stage = model.stages[i]
        p = params(stage.downsample) + params(stage.blocks[0])
        m = macs(f"stages.{i}.downsample") + macs(f"stages.{i}.blocks.0")
        if depth > 1:
            p += (depth - 1) * params(stage.blocks[1])
            m += (depth - 1) * macs(f"stages.{i}.blocks.1")
        parts.append(PartCount(f"stage {i + 1}", p, m))
    parts.append(PartCount("head", params(model.head), macs("head")))
    parts.append(PartCount("total", sum(c.params for c in parts), sum(c.macs for c in parts)))
    return tuple(parts)


# --- phrases from the spec difference ----------------------------------------------------------

def _seq(v: tuple[int, ...]) -> str:
    return ",".join(map(str, v))


def _act(a: str) -> str:
    return get_kind("act", a).label


def _norm(n: str) -> str:
    return get_kind("norm", n).label


def _with_args(family: str, name: str, args: tuple[tuple[str, object], ...]) -> str:
    """A kind's label, with its parameters when it has any ('GroupNorm (groups 32)')."""
    return get_kind(family, name).words(args)


def _ratio(old: tuple[int, ...], new: tuple[int, ...]) -> str:
    ratios = {n / o for o, n in zip(old, new)}
    return f" (x{ratios.pop():.3g} each)" if len(ratios) == 1 else ""


def _depths(old: ArchSpec, new: ArchSpec) -> str:
    return (f"blocks per stage {_seq(old.depths)} -> {_seq(new.depths)} "
            f"({old.num_blocks} -> {new.num_blocks} blocks in all)")


def _dims(old: ArchSpec, new: ArchSpec) -> str:
    if len(old.dims) == len(new.dims):
        return f"block input/output widths per stage {_seq(old.dims)} -> {_seq(new.dims)}{_ratio(old.dims, new.dims)}"
    return f"block widths per stage {_seq(old.dims)} -> {_seq(new.dims)}"


def _block(old: ArchSpec, new: ArchSpec) -> str:
    def what(s: ArchSpec) -> str:
        if s.block == "bottleneck":
            return f"bottleneck (wide -> narrow -> wide, hidden = width / {s.expansion})"
        return f"inverted bottleneck (narrow -> wide -> narrow, hidden = {s.expansion} x width)"
    return f"block shape: {what(old)} -> {what(new)}"


def _spatial_pos(old: ArchSpec, new: ArchSpec) -> str:
    where = {"middle": "the middle of the block (1x1 -> kxk -> 1x1)", "top": "the top of the block (kxk -> 1x1 -> 1x1)"}
    return f"the {old.kernel_size}x{old.kernel_size} spatial conv moves from {where[old.spatial_pos]} " \
           f"to {where[new.spatial_pos]}"


def _groups(old: ArchSpec, new: ArchSpec) -> str:
    if new.groups == "depthwise":
        return (f"the {new.kernel_size}x{new.kernel_size} conv becomes depthwise (one filter per channel, "
                f"groups = channels; it mixes space only)")
    return f"groups of the {new.kernel_size}x{new.kernel_size} conv {old.groups} -> {new.groups}"


def _kernel(old: ArchSpec, new: ArchSpec) -> str:
    k0, k1 = old.kernel_size, new.kernel_size
    kind = "depthwise " if new.groups == "depthwise" else ""
    return f"{kind}kernel {k0}x{k0} -> {k1}x{k1} (padding {k1 // 2}, same output size)"


def _act_kind(old: ArchSpec, new: ArchSpec) -> str:
    return (f"activation {_with_args('act', old.act, old.act_args)} -> "
            f"{_with_args('act', new.act, new.act_args)} everywhere")


def _acts(old: ArchSpec, new: ArchSpec) -> str:
    where = {"every_conv": "after the first two convs and after the residual add",
             "one": "a single one, between the two 1x1 convs"}
    return f"{_act(new.act)} activations: {where[old.acts]} -> {where[new.acts]}"


def _norm_kind(old: ArchSpec, new: ArchSpec) -> str:
    extra = " (over channels at each position, eps 1e-6)" if new.norm == "layer" else ""
    return (f"every {_with_args('norm', old.norm, old.norm_args)} becomes a "
            f"{_with_args('norm', new.norm, new.norm_args)}{extra}")


def _components(old: ArchSpec, new: ArchSpec) -> str:
    def words(c: object) -> str:
        return f"{_with_args('component', c.kind, c.args)} {PLACES[c.at]}"  # type: ignore[attr-defined]
    added = [words(c) for c in new.components if c not in old.components]
    removed = [words(c) for c in old.components if c not in new.components]
    parts = [f"every block gains a {w}" for w in added] + [f"the {w} is removed" for w in removed]
    return "; ".join(parts) or "block components reordered: " + ", ".join(words(c) for c in new.components)


def _norms(old: ArchSpec, new: ArchSpec) -> str:
    where = {"every_conv": "one after every conv",
             "one": "a single one, after the spatial conv (the shortcut projection keeps its own)"}
    return f"{_norm(new.norm)} layers in a block: {where[old.norms]} -> {where[new.norms]}"


def _bias(old: ArchSpec, new: ArchSpec) -> str:
    return ("the block's convs gain a bias (no BatchNorm follows them to absorb one)" if new.conv_bias
            else "the block's convs lose their bias (a BatchNorm follows each)")


def _downsample(old: ArchSpec, new: ArchSpec) -> str:
    how = {"in_block": "the first block of stages 2+ strides, with a 1x1 stride-2 projection shortcut",
           "separate": f"a separate {_norm(new.norm)} + 2x2 stride-2 conv between stages; blocks never stride"}
    return f"downsampling: {how[old.downsample]} -> {how[new.downsample]}"


def _layer_scale(old: ArchSpec, new: ArchSpec) -> str:
    if not old.layer_scale:
        return f"layer scale added: a learnable per-channel scale on each residual branch, init {new.layer_scale:g}"
    if not new.layer_scale:
        return "layer scale removed"
    return f"layer scale init {old.layer_scale:g} -> {new.layer_scale:g}"


def _drop_path(old: ArchSpec, new: ArchSpec) -> str:
    return f"stochastic depth rate (last block) {old.drop_path:g} -> {new.drop_path:g}"


def _head_norm(old: ArchSpec, new: ArchSpec) -> str:
    kind = _norm(new.norm)
    return (f"a {kind} after global pooling, before the classifier" if new.head_norm
            else "the norm after global pooling is removed")


def _stem(old: ArchSpec, new: ArchSpec) -> str:
    a, b = drawing(old).stem, drawing(new).stem
    kind = ""
    if old.stem != new.stem and new.stem == "patchify":
        kind = f" (patchify: non-overlapping {new.stem_kernel}x{new.stem_kernel} patches, like a ViT)"
    return f"stem: {a} -> {b}{kind}"


def _generic(name: str) -> Callable[[ArchSpec, ArchSpec], str]:
    return lambda old, new: f"{name}: {getattr(old, name)} -> {getattr(new, name)}"


PHRASES: dict[str, Callable[[ArchSpec, ArchSpec], str]] = {
    "depths": _depths, "dims": _dims, "block": _block, "spatial_pos": _spatial_pos, "groups": _groups,
    "kernel_size": _kernel, "act": _act_kind, "acts": _acts, "norm": _norm_kind, "norms": _norms,
    "conv_bias": _bias, "downsample": _downsample, "layer_scale": _layer_scale, "drop_path": _drop_path,
    "head_norm": _head_norm, "components": _components,
    "act_args": lambda old, new: _act_kind(old, new).replace(" everywhere", " (parameters)"),
    "norm_args": lambda old, new: _norm_kind(old, new).split(" (over")[0] + " (parameters)",
}
"""One phrase generator per spec field; the stem fields share one (the stem drawn before/after)."""


def change_phrases(old: ArchSpec, new: ArchSpec) -> list[str]:
    """Plain-words list of what differs between two specs, in spec field order."""
    diff = old.diff(new)
    phrases: list[str] = []
    if any(f in diff for f in _STEM_FIELDS):
        phrases.append(_stem(old, new))
    for name in diff:
        if name in _STEM_FIELDS:
            continue
        if name == "expansion" and "block" in diff:
            continue  # the block phrase states the ratio
        if name in ("act_args", "norm_args") and name.removesuffix("_args") in diff:
            continue  # the kind's phrase states its parameters
        phrases.append(PHRASES.get(name, _generic(name))(old, new))
    return phrases


# --- the text ---------------------------------------------------------------------------------

def _wrap(label: str, text: str, indent: int = 2) -> list[str]:
    """Wrap text so no line exceeds WIDTH; a drawing too long for one line puts its shortcut
    (``+ ...``) on a line of its own rather than breaking inside it."""
    first = " " * indent + label
    pad = " " * len(first)
    room = WIDTH - len(first)
    pieces = [text] if len(text) <= room else text.replace("  + ", "\n+ ").split("\n")
    lines = [line for piece in pieces
             for line in textwrap.wrap(piece, width=room, break_long_words=False, break_on_hyphens=False)]
    return [(first if i == 0 else pad) + line for i, line in enumerate(lines)] or [first]


def _recipe(roadmap: Roadmap, step: Step | None) -> str | None:
    return None if step is None else (step.recipe or roadmap.recipe)


def _delta(diff: int, unit: float, digits: int) -> str:
    """Signed change; a change too small to show reads 0 or +-0.000, never -0.000 for a gain."""
    if diff == 0:
        return "0"
    text = f"{diff / unit:+.{digits}f}"
    return text if float(text) != 0 else ("+" if diff > 0 else "-") + "<" + f"{10 ** -digits:.{digits}f}"


def counts_table(old: ArchSpec | None, new: ArchSpec, resolution: int) -> list[str]:
    after = stage_counts(new, resolution)
    before = stage_counts(old, resolution) if old is not None else None
    lines = [f"  Params and MACs per stage at {resolution} px (MACs = conv + linear multiply-accumulates):"]
    if before is None:
        lines.append(f"    {'part':<9}{'params (M)':>12}{'GMACs':>12}")
        for a in after:
            lines.append(f"    {a.name:<9}{a.params / 1e6:>12.3f}{a.macs / 1e9:>12.4f}")
        return lines
    lines.append(f"    {'part':<9}{'params (M): before':>20}{'after':>9}{'change':>10}"
                 f"{'GMACs: before':>17}{'after':>9}{'change':>10}")
    for b, a in zip(before, after):
        lines.append(f"    {a.name:<9}{b.params / 1e6:>20.3f}{a.params / 1e6:>9.3f}"
                     f"{_delta(a.params - b.params, 1e6, 3):>10}"
                     f"{b.macs / 1e9:>17.4f}{a.macs / 1e9:>9.4f}{_delta(a.macs - b.macs, 1e9, 4):>10}")
    if len(before) != len(after):
        lines.append("    (the number of stages changed; rows pair stages by position)")
    return lines


def describe_step(roadmap: Roadmap, step: Step | str, *, resolution: int = 224, counts: bool = True) -> str:
    """The teaching text of one step (<= WIDTH columns per line); ``step`` a step of ``roadmap``
    or its name, as ``step_diagram`` takes it (a notebook passes either)."""
    name = step if isinstance(step, str) else getattr(step, "name", None)
    if not isinstance(name, str) or name not in roadmap.names:
        raise ConfigError(f"step {name if isinstance(name, str) else step!r} is not in roadmap '{roadmap.name}' "
                          f"(valid: {', '.join(roadmap.names)})")
    step = roadmap[name] if isinstance(step, str) else step
    index = roadmap.names.index(name) + 1
    parent = roadmap[step.parent] if step.parent else None
    status = "adopted" if step.adopted else "explored branch, not adopted"
    head = f"== {index}/{len(roadmap)}  {step.name}  ({status}; parent: {parent.name if parent else 'none'}) "
    lines = [head + "=" * max(3, WIDTH - len(head)), *_wrap("", step.change, 2), ""]
    old = parent.spec if parent else None
    if old is None:
        lines += _wrap("", f"Starting point: the roadmap's base network, {len(step.spec.depths)} stages "
                       f"of depths {_seq(step.spec.depths)} and widths {_seq(step.spec.dims)}.", 2)
        phrases = []
    else:
        phrases = change_phrases(old, step.spec)
        r0, r1 = _recipe(roadmap, parent), _recipe(roadmap, step)
        lines.append("  What changed (from the spec difference to the parent):")
        for p in phrases:
            lines += _wrap("- ", p, 4)
        if not phrases:
            lines.append("    - no architecture change")
        if r0 != r1:
            lines.append(f"    - training recipe {r0} -> {r1}")
    lines.append("")
    new_d = drawing(step.spec)
    old_d = drawing(old) if old is not None else None
    lines.append("  Stage 2, first block (" + ("after a separate downsampling layer" if new_d.downsample
                                             else "it downsamples") + "):")
    for label, d in (("before: ", old_d), ("after:  " if old_d else "block:  ", new_d)):
        if d is None:
            continue
        if d is new_d and old_d is not None and old_d == new_d:
            lines.append("    after:  (same as before)")
            continue
        if d.downsample:
            lines += _wrap(label + "downsample ", d.downsample, 4)
            lines += _wrap(" " * len(label), d.block, 4)
        else:
            lines += _wrap(label, d.block, 4)
    if new_d.linear_1x1:
        lines.append("    (the 1x1 convs run as nn.Linear on channels-last tensors, as in official ConvNeXt)")
    if old_d is not None and old_d.stem != new_d.stem:
        lines += _wrap("stem:   ", f"{old_d.stem}  ->  {new_d.stem}", 4)
    if old_d is not None and old_d.head != new_d.head:
        lines += _wrap("head:   ", f"{old_d.head}  ->  {new_d.head}", 4)
    if counts:
        lines.append("")
        lines += counts_table(old, step.spec, resolution)
    return "\n".join(lines) + "\n"


def describe(roadmap: Roadmap, steps: list[str] | None = None, *, resolution: int = 224,
             counts: bool = True) -> str:
    names = steps or roadmap.names
    unknown = [n for n in names if n not in roadmap.names]
    if unknown:
        raise ConfigError(f"--step: unknown step(s) {', '.join(unknown)} in roadmap '{roadmap.name}' "
                          f"(valid: {', '.join(roadmap.names)})")
    return "\n".join(describe_step(roadmap, roadmap[n], resolution=resolution, counts=counts) for n in names)


__all__ = ["change_phrases", "describe", "describe_step", "drawing", "module_macs", "stage_counts"]
