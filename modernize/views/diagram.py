"""Block diagrams of a roadmap step: the block before and after, drawn from the built modules.

What is drawn comes from walking the ``nn.Module`` tree that ``modernize.model`` builds for
the step's spec (on the meta device: shapes only, no weights), never from a list kept here:
the first block of stage 2 (it shows how a stage downsamples), plus the stem, the
downsampling layer before stage 2 and the head wherever the step changes them. Each layer
is a box with its kind, kernel, stride and channels; the residual path runs beside the
block into the add. A module type this file does not know (a layer kind registered by a
user, a squeeze-and-excitation unit) is drawn by its class name and whatever conv / linear
attributes it and its children have, so a new kind needs no edit here.

How a changed layer is found: a layer is matched across the two builds by its module name
inside its part (``conv_dw``, ``norm_pw1``, ``shortcut.conv``, ...). It is *unchanged* when
the other build has a module of that name with the same type and the same shape (kernel,
stride, channels, groups, bias); *changed* when the name exists with another type or shape;
*new* when the name is absent before; *removed* when it is absent after. A name found on one
side only is first paired with the unmatched layer at the same position on the other side (a
renamed slot: ``conv_kxk`` becomes ``conv_dw`` when the conv turns depthwise). Matched layers
out of their old order are *moved* (the longest chain that kept its order stays put). An
``nn.Linear`` counts as the 1x1 conv it computes on channels-last tensors.

Figures are matplotlib (already a dependency, and what the report's figures use): graphviz
would lay the boxes out by itself but needs the ``dot`` binary on the machine, and a block
is a single column with one side path, which a fixed layout draws exactly
(:mod:`modernize.views.diagram_draw`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import torch
from torch import nn

from ..model import build_model
from ..spec import ArchSpec
from .layer_view import LayerView, block_view, module_view, sequence_view


@dataclass(frozen=True)
class Layer:
    """One box: ``name`` is the module's name inside its part, ``label`` what the box reads,
    ``kind`` its colour class (conv, norm, act, pool, other), ``key`` what matching compares."""

    name: str
    label: str
    kind: str
    key: tuple[object, ...]
    status: str = ""
    """'' (unchanged, or nothing to compare); after a step: 'new', 'changed', 'moved' or
    'moved, changed'; before it: 'removed', 'replaced', 'moved' or 'moved, replaced'."""


@dataclass(frozen=True)
class Part:
    """A stem, downsampling layer, block or head: the layers in forward order, and for a
    residual block its shortcut (``()`` = identity) and what follows the add."""

    title: str
    layers: tuple[Layer, ...]
    shape_in: str = ""
    shape_out: str = ""
    shortcut: tuple[Layer, ...] | None = None
    after_add: tuple[Layer, ...] = ()

    @property
    def all_layers(self) -> tuple[Layer, ...]:
        return self.layers + (self.shortcut or ()) + self.after_add


@dataclass(frozen=True)
class Side:
    """One network's parts, and its stages (blocks x channels, output size) for the header."""

    name: str
    parts: dict[str, Part]
    stages: tuple[tuple[int, int, int], ...] = field(default=())
    """Per stage: blocks, output channels, output height."""

    @property
    def stages_text(self) -> str:
        d, c, h = zip(*self.stages) if self.stages else ((), (), ())
        return (f"blocks {'-'.join(map(str, d))} · widths {'-'.join(map(str, c))} · "
                f"maps {'-'.join(map(str, h))} px")


# --- one module -> one box (the layer view that ``describe`` also reads) --------------------------

def _layer(v: LayerView) -> Layer:
    return Layer(v.name, v.label, v.role, v.key)


def layer_of(name: str, m: nn.Module) -> Layer:
    """The box of one module (:func:`modernize.views.layer_view.module_view`)."""
    return _layer(module_view(name, m))


def _sequence(named: list[tuple[str, nn.Module]], prefix: str = "") -> tuple[Layer, ...]:
    return tuple(_layer(v) for v in sequence_view(named, prefix))


def _block_part(title: str, block: nn.Module) -> Part:
    """The residual branch in forward order, the shortcut, then what follows the add
    (:func:`modernize.views.layer_view.block_view`)."""
    view = block_view(block)
    layers = tuple(replace(la, label=la.label.replace("linear, ", "conv 1x1 (linear), "))
                   for la in map(_layer, view.branch))
    return Part(title, layers, shortcut=tuple(map(_layer, view.shortcut)), after_add=tuple(map(_layer, view.after_add)))


def _plain_part(title: str, module: nn.Module) -> Part:
    children = list(module.named_children())
    return Part(title, _sequence(children) if children else _sequence([(title, module)]))


def _shape(t: torch.Tensor) -> str:
    return "×".join(str(d) for d in t.shape[1:])


@lru_cache(maxsize=128)
def side_of(spec: ArchSpec, resolution: int = 224, name: str = "") -> Side:
    """Stem, downsampling before stage 2, the first block of stage 2 (stage 1 if only one) and
    head of ``spec``'s model (stochastic depth off: a training regulariser, not a layer), with
    the tensor shapes seen by a shape-only forward at ``resolution`` px."""
    model = build_model(spec.replace(drop_path=0.0), device="meta").eval()
    shapes: dict[str, str] = {}
    stages: list[tuple[int, int, int]] = []
    x = torch.zeros(1, spec.in_chans, resolution, resolution, device="meta")
    with torch.no_grad():
        x = model.stem(x)
        shapes["stem_out"] = _shape(x)
        for i, stage in enumerate(model.stages):
            if i == min(1, len(model.stages) - 1):
                shapes["ds_in"] = _shape(x)
                x = stage.downsample(x)
                shapes["block_in"] = _shape(x)
                x = stage.blocks[0](x)
                shapes["block_out"] = _shape(x)
                x = stage.blocks[1:](x)
            else:
                x = stage(x)
            stages.append((len(stage.blocks), int(x.shape[1]), int(x.shape[2])))
    idx = min(1, len(model.stages) - 1)
    stage = model.stages[idx]
    head_in = x
    parts = {"stem": replace(_plain_part("stem", model.stem), shape_in=f"{spec.in_chans}×{resolution}×{resolution}",
                             shape_out=shapes["stem_out"]),
             "downsample": replace(_plain_part(f"downsampling before stage {idx + 1}", stage.downsample),
                                   shape_in=shapes["ds_in"], shape_out=shapes["block_in"]),
             "block": replace(_block_part(f"stage {idx + 1}, first block", stage.blocks[0]),
                              shape_in=shapes["block_in"], shape_out=shapes["block_out"]),
             "head": replace(_plain_part("head", model.head), shape_in=_shape(head_in),
                             shape_out=f"{spec.num_classes} classes")}
    return Side(name, parts, tuple(stages))


# --- before vs after ------------------------------------------------------------------------------

def _kept_in_order(pairs: list[tuple[int, int, bool]]) -> set[tuple[int, int]]:
    """The heaviest chain of matched pairs (before index, after index, same) that keeps its
    order, unchanged layers weighing a little more (of two equal chains, the layers that also
    changed are the ones that moved); the pairs outside it moved."""
    pairs = sorted(pairs, key=lambda p: p[1])
    best: list[tuple[float, list[tuple[int, int]]]] = []
    for k, (i, j, same) in enumerate(pairs):
        prev = max((best[m] for m in range(k) if pairs[m][0] < i), key=lambda b: b[0], default=(0.0, []))
        best.append((prev[0] + 1 + 0.01 * same, prev[1] + [(i, j)]))
    return set(max(best, key=lambda b: b[0], default=(0.0, []))[1])


def _mark(before: tuple[Layer, ...], after: tuple[Layer, ...]) -> tuple[tuple[Layer, ...], tuple[Layer, ...]]:
    """Statuses of one sequence (branch, shortcut or after-add) on both sides: twins by name,
    else the unmatched layer at the same position (a renamed slot: conv_kxk -> conv_dw)."""
    a_names, b_names = {la.name for la in before}, {la.name for la in after}
    pairs: dict[int, int] = {}
    for j, b in enumerate(after):
        i = next((i for i, a in enumerate(before) if a.name == b.name), None)
        if i is None and j < len(before) and before[j].name not in b_names and b.name not in a_names:
            i = j
        if i is not None:
            pairs[j] = i
    in_order = _kept_in_order([(i, j, before[i].key == after[j].key) for j, i in pairs.items()])
    new_after, status_before = [], {}
    for j, b in enumerate(after):
        if j not in pairs:
            new_after.append(replace(b, status="new"))
            continue
        i = pairs[j]
        words = ([] if (i, j) in in_order else ["moved"]) + ([] if before[i].key == b.key else ["changed"])
        new_after.append(replace(b, status=", ".join(words)))
        status_before[i] = ", ".join(w.replace("changed", "replaced") for w in words)
    new_before = [replace(a, status=status_before.get(i, "removed")) for i, a in enumerate(before)]
    return tuple(new_before), tuple(new_after)


def _mark_parts(old: Part, new: Part) -> tuple[Part, Part]:
    b_layers, a_layers = _mark(old.layers, new.layers)
    b_sc, a_sc = _mark(old.shortcut or (), new.shortcut or ())
    b_after, a_after = _mark(old.after_add, new.after_add)
    return (replace(old, layers=b_layers, shortcut=None if old.shortcut is None else b_sc, after_add=b_after),
            replace(new, layers=a_layers, shortcut=None if new.shortcut is None else a_sc, after_add=a_after))


def _same(a: Part, b: Part) -> bool:
    return [la.key for la in a.all_layers] == [la.key for la in b.all_layers]


@dataclass(frozen=True)
class Comparison:
    """The parts to draw on each side (``before`` is None for a roadmap's first step)."""

    before: Side | None
    after: Side
    shown: tuple[str, ...]
    """Part names drawn, in order: the block always, stem / downsample / head where they changed."""

    @property
    def changed(self) -> list[Layer]:
        return [la for p in self.shown for la in self.after.parts[p].all_layers if la.status]

    @property
    def removed(self) -> list[Layer]:
        if self.before is None:
            return []
        return [la for p in self.shown for la in self.before.parts[p].all_layers if la.status == "removed"]


def compare(old: Side | None, new: Side) -> Comparison:
    """Mark what changed from ``old`` to ``new`` (see the module docstring for the matching)."""
    if old is None:
        return Comparison(None, new, ("block",))
    shown = tuple(p for p in ("stem", "downsample", "block", "head")
                  if p == "block" or not _same(old.parts[p], new.parts[p]))
    marked = {p: _mark_parts(old.parts[p], new.parts[p]) for p in new.parts}
    if "downsample" not in shown and new.parts["downsample"].layers:  # say where the block's input comes from
        marked["block"] = tuple(replace(b, title=b.title + " (after an unchanged downsampling layer)")
                                for b in marked["block"])  # type: ignore[assignment]
    return Comparison(replace(old, parts={p: m[0] for p, m in marked.items()}),
                      replace(new, parts={p: m[1] for p, m in marked.items()}), shown)


__all__ = ["Comparison", "Layer", "Part", "Side", "compare", "layer_of", "side_of"]
