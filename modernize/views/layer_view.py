"""One view of a built block's layers, in forward order: what ``describe``'s text drawing and
the block diagrams both show, so the two cannot disagree about a layer (a user kind included).

A layer's role (conv, norm, act, pool, other) comes from the registered kind that built it
(:func:`modernize.kinds.kind_of`) where there is one, else from its torch class; a module type
nothing here knows is shown by its class name and whatever conv / linear attributes it and its
children have, so a new kind needs no edit here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torchvision.ops.misc import Permute

from ..kinds import kind_of

LAYOUT_ONLY = (nn.Identity, nn.Flatten, Permute, nn.Dropout)
"""Modules that move or pass data without computing on it: not shown."""
SIDE = ("shortcut", "drop_path", "act_out")
"""A block's children outside its residual branch."""
_ATTRS = ("in_channels", "out_channels", "kernel_size", "stride", "groups", "in_features", "out_features",
          "num_features", "num_channels", "num_groups", "normalized_shape")
_ROLE_OF_FAMILY = {"act": "act", "norm": "norm", "component": "other"}


@dataclass(frozen=True)
class LayerView:
    """One layer: ``name`` inside its block or part, ``role`` its colour class (conv, norm, act,
    pool, other), ``label`` a diagram box's words, ``token`` the text drawing's, ``key`` what
    a before/after comparison matches, ``params`` its parameter count, ``kind`` the registered
    kind that built it ('family:name') or ''."""

    name: str
    role: str
    label: str
    token: str
    key: tuple[object, ...]
    params: int = 0
    kind: str = ""


@dataclass(frozen=True)
class BlockView:
    """A residual block: its branch in forward order (layer scale and stochastic depth last),
    its shortcut (``()`` = identity) and what follows the add."""

    branch: tuple[LayerView, ...]
    shortcut: tuple[LayerView, ...]
    after_add: tuple[LayerView, ...]


def _pair(v: object) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)  # type: ignore[arg-type]


def _conv(m: nn.Conv2d) -> tuple[str, str, tuple[object, ...]]:
    k, s, g = _pair(m.kernel_size), _pair(m.stride), m.groups
    bias = m.bias is not None
    dw = g == m.in_channels and g > 1
    label = (f"dw conv {k}x{k}{f' /{s}' if s > 1 else ''}, {m.in_channels} ch" if dw else
             f"conv {k}x{k}{f' /{s}' if s > 1 else ''}{f' g{g}' if g > 1 else ''}, {m.in_channels}→{m.out_channels}")
    ks = f"{k}x{k}" + (f"/{s}" if s > 1 else "")
    token = f"dw {ks} {m.in_channels}" if dw else f"{ks}{f' g{g}' if g > 1 else ''} {m.in_channels}->{m.out_channels}"
    return label + (" +b" if bias else ""), token, ("Conv2d", k, s, m.in_channels, m.out_channels, g, bias)


def _generic(m: nn.Module) -> tuple[str, tuple[object, ...]]:
    """Class name plus the conv / linear attributes it has, plus a summary of its conv and
    linear children (a squeeze-and-excitation unit reads ``SqueezeExcitation: 1x1 96→24, ...``)."""
    attrs = {a: getattr(m, a) for a in _ATTRS if isinstance(getattr(m, a, None), (int, tuple, list))}
    parts = []
    if "kernel_size" in attrs:
        k = _pair(attrs["kernel_size"])
        parts.append(f"{k}x{k}")
    if "stride" in attrs and _pair(attrs["stride"]) > 1:
        parts.append(f"/{_pair(attrs['stride'])}")
    for a, b in (("in_channels", "out_channels"), ("in_features", "out_features")):
        if a in attrs and b in attrs:
            parts.append(f"{attrs[a]}→{attrs[b]}")
    for a in ("num_features", "num_channels", "normalized_shape"):
        if a in attrs:
            parts.append(f"{_pair(attrs[a])} ch")
    if "num_groups" in attrs:
        parts.append(f"{attrs['num_groups']} groups")
    inner = [_conv(c)[0].removeprefix("conv ").replace(",", "") if isinstance(c, nn.Conv2d) else
             f"linear {c.in_features}→{c.out_features}" for c in m.modules()
             if c is not m and isinstance(c, (nn.Conv2d, nn.Linear))]
    own = list(m.parameters(recurse=False))
    if not parts and not inner and own and own[0].dim():  # e.g. a norm that keeps only its gamma: its channels
        parts.append(f"{max(own[0].shape)} ch")
    text = " ".join([type(m).__name__, *parts])
    if inner:
        text += ": " + ", ".join(inner)
    return text, (type(m).__name__, tuple(parts), tuple(inner))


def _by_class(m: nn.Module) -> tuple[str, str, str, tuple[object, ...]]:
    """Role, label, token and key of a module from its torch class."""
    if isinstance(m, nn.Conv2d):
        label, token, key = _conv(m)
        return "conv", label, token, key
    if isinstance(m, nn.Linear):  # in a block: the 1x1 conv it computes on channels-last tensors
        key = ("Conv2d", 1, 1, m.in_features, m.out_features, 1, m.bias is not None)
        bias = " +b" if m.bias is not None else ""
        return "conv", f"linear, {m.in_features}→{m.out_features}{bias}", \
            f"1x1 {m.in_features}->{m.out_features}", key
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "norm", f"BatchNorm, {m.num_features} ch", "BN", ("BatchNorm", m.num_features)
    if isinstance(m, nn.LayerNorm):  # torchvision's LayerNorm2d is a subclass
        c = m.normalized_shape[0]
        return "norm", f"LayerNorm, {c} ch", "LN", ("LayerNorm", c)
    if isinstance(m, nn.MaxPool2d):
        k, s = _pair(m.kernel_size), _pair(m.stride)
        return "pool", f"max-pool {k}x{k} /{s}", f"maxpool {k}x{k}/{s}", ("MaxPool2d", k, s)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return "pool", "global average pool", "avgpool", ("AdaptiveAvgPool2d",)
    text, key = _generic(m)
    leaf = not list(m.children())
    role = ("act" if type(m).__module__ == "torch.nn.modules.activation" and leaf else
            "norm" if "Norm" in type(m).__name__ and leaf else "other")
    return role, text, type(m).__name__, key


def module_view(name: str, m: nn.Module) -> LayerView:
    """The view of one module; a registered kind's module takes its role, token and label from
    the kind (a user activation returning its own class is an activation in every drawing)."""
    role, label, token, key = _by_class(m)
    kind = kind_of(m)
    params = sum(p.numel() for p in m.parameters())
    if kind is None:
        return LayerView(name, role, label, token, key, params)
    if label.startswith(type(m).__name__):  # shown by class name: the kind's words instead
        label = kind.label + label.removeprefix(type(m).__name__)
    return LayerView(name, _ROLE_OF_FAMILY[kind.family], label, kind.token, (kind.family, kind.name, *key),
                     params, f"{kind.family}:{kind.name}")


def sequence_view(named: list[tuple[str, nn.Module]], prefix: str = "") -> tuple[LayerView, ...]:
    """The views of modules in order, data-layout-only ones left out."""
    return tuple(module_view(prefix + n, m) for n, m in named if not isinstance(m, LAYOUT_ONLY))


def _branch_modules(block: nn.Module) -> list[tuple[str, nn.Module]]:
    """The residual branch in forward order: the block's ``branch()`` where it has one (what its
    ``forward`` runs), else its children outside the shortcut and what follows the add."""
    branch = getattr(block, "branch", None)
    if callable(branch):
        return list(branch())
    return [(n, m) for n, m in block.named_children() if n not in SIDE]


def block_view(block: nn.Module) -> BlockView:
    """The ordered layers of a built residual block: the single source of ``describe``'s text
    drawing and of the block diagrams."""
    layers = sequence_view(_branch_modules(block))
    gamma = getattr(block, "gamma", None)
    if isinstance(gamma, torch.Tensor):
        c = gamma.shape[0]
        layers += (LayerView("gamma", "other", f"× layer scale γ, {c} ch", "x layer scale", ("gamma", c), c),)
    drop = getattr(block, "drop_path", None)
    if drop is not None and not isinstance(drop, nn.Identity):
        layers += (replace(module_view("drop_path", drop), token="drop path"),)
    sc = getattr(block, "shortcut", None)
    shortcut: tuple[LayerView, ...] = ()
    if sc is not None and not isinstance(sc, nn.Identity):
        children = list(sc.named_children())
        shortcut = sequence_view(children, "shortcut.") if children else (module_view("shortcut", sc),)
    after = getattr(block, "act_out", None)
    after_add = () if after is None or isinstance(after, nn.Identity) else (module_view("act_out", after),)
    return BlockView(layers, shortcut, after_add)


__all__ = ["BlockView", "LayerView", "block_view", "module_view", "sequence_view"]
