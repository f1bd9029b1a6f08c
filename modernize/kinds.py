"""The layer kinds a spec names, as registries a user module extends by name.

Like timm's layer factories (``create_act_layer``, ``get_norm_layer``), a spec holds only a
kind's *name* (``act = "silu"``, ``norm = "group"``, ``components = [{kind = "se"}]``); the
builder looks the name up here. Three families:

* **act**: ``factory(**args) -> nn.Module``, elementwise, any tensor layout. It sits after
  convs in the block, in the ResNet stem and after the residual add.
* **norm**: ``factory(channels, *, layout, **args) -> nn.Module`` that keeps the shape of a
  ``layout`` tensor: ``"NCHW"`` (stem, downsampling layer, shortcut projection, block),
  ``"NHWC"`` (in a ConvNeXt-form block, only for kinds registered ``channels_last=True``)
  or ``"NC"`` (after global pooling in the head).
* **component**: a module inserted in the residual branch at a place (``PLACES``):
  ``factory(channels, *, layout, **args) -> nn.Module`` that keeps the shape. ``layout`` is
  ``"NCHW"``, or ``"NHWC"`` inside a channels-last block when the kind is registered
  ``channels_last=True`` (otherwise the builder permutes around it).

Keyword arguments after ``layout`` are the kind's parameters (typed, with defaults); a spec
gives them in ``act_args`` / ``norm_args`` / a component's table. ``check(channels, **args)``
returns why a width cannot work (e.g. GroupNorm's groups do not divide it), so a spec is
refused when it is made, naming the field. A module with parameters or buffers of its own must
have ``reset_parameters()`` (the builder materializes on the meta device, then initializes);
convs and linears inside get the spec's truncated-normal init. A kind whose forward cannot be
traced by ``torch.fx`` is registered ``leaf=True`` and stays one node (``modernize.fx``).

User kinds are registered in a module named in a roadmap's ``imports``; the fingerprint of
a job covers the source of the module that defines each non-built-in kind it uses and of every
local module that module imports (``modernize.usercode``), not the modules of other kinds.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._typing import coerce
from .errors import SpecError

if TYPE_CHECKING:
    from torch import nn

# torch is imported by the factories, not here: specs validate kind names without it, so
# building the command line (and --help) stays fast.

FAMILIES = ("act", "norm", "component")
PLACES: dict[str, str] = {
    "after_spatial": "after the kxk conv (and its norm and activation, if any)",
    "before_last": "before the last 1x1 conv (after the hidden activation)",
    "end": "at the end of the residual branch, before layer scale and the add",
}
"""Where a block component can sit, in branch order (a ResNet block's first two coincide)."""
LN_EPS = 1e-6  # ConvNeXt's LayerNorm eps; BatchNorm keeps PyTorch's 1e-5 (torchvision ResNet).
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_FIXED = {"channels", "layout"}


@dataclass(frozen=True)
class Kind:
    family: str
    name: str
    factory: Callable[..., nn.Module]
    label: str
    """Words for ``describe`` ("SiLU", "squeeze-and-excitation")."""
    token: str
    """The token of the text drawing ("SiLU", "GN", "SE")."""
    check: Callable[..., str | None] | None = None
    channels_last: bool = False
    place: str = "end"
    """A component's place when a spec names none."""
    leaf: bool = False
    own_hash: str = ""
    """The hash of the defining module's file, read when the kind is registered (the code this
    process runs)."""

    @property
    def builtin(self) -> bool:
        return self.factory.__module__ == __name__

    @property
    def source_hash(self) -> str:
        """The hash of the kind's code: its module and the local modules that module imports,
        transitively (equal to ``own_hash`` when it imports none)."""
        from .usercode import code_hash

        return code_hash(self.factory.__module__, self.own_hash)

    @property
    def params(self) -> dict[str, tuple[Any, Any]]:
        """The kind's parameters: ``{name: (type hint, default)}``."""
        fn = self.factory.__init__ if inspect.isclass(self.factory) else self.factory
        try:
            hints = typing.get_type_hints(fn)
        except NameError:  # a return hint naming what the module imports lazily (nn.Module): the parameters only
            glb = getattr(fn, "__globals__", {})
            hints = {k: eval(v, glb) if isinstance(v, str) else v  # noqa: S307 (the kind's own annotation)
                     for k, v in getattr(fn, "__annotations__", {}).items() if k != "return"}
        sig = inspect.signature(self.factory)
        return {p.name: (hints.get(p.name, Any), p.default) for p in sig.parameters.values()
                if p.name not in _FIXED and p.kind is p.KEYWORD_ONLY}

    def check_args(self, args: dict[str, Any], field: str) -> dict[str, Any]:
        """``args`` coerced to the parameter types; a bad name or value is a ``SpecError``."""
        known = self.params
        out = {}
        for key, value in args.items():
            if key not in known:
                raise SpecError(f"spec field '{field}': {self.family} '{self.name}' has no parameter '{key}' "
                                f"(valid: {', '.join(known) or 'none'})")
            try:
                out[key] = coerce(value, known[key][0])
            except TypeError as exc:
                raise SpecError(f"spec field '{field}': {self.family} '{self.name}' parameter '{key}': {exc}") from None
        return out

    def why_not(self, channels: int, args: dict[str, Any]) -> str | None:
        """Why ``channels`` cannot work with these args (the kind's ``check``), or None."""
        if self.check is None:
            return None
        defaults = {k: d for k, (_, d) in self.params.items() if d is not inspect.Parameter.empty}
        return self.check(channels, **(defaults | args))

    def build(self, *a: Any, **kw: Any) -> nn.Module:
        from torch import nn

        module = self.factory(*a, **kw)
        if not isinstance(module, nn.Module):
            raise SpecError(f"{self.family} kind '{self.name}' returned {type(module).__name__}, not an nn.Module")
        setattr(module, KIND_ATTRIBUTE, KindTag(self.family, self.name))
        return module

    def words(self, args: tuple[tuple[str, Any], ...] | dict[str, Any] = ()) -> str:
        """The label with every parameter's value, defaults included: 'GroupNorm (groups 32)'."""
        values = {k: d for k, (_, d) in self.params.items() if d is not inspect.Parameter.empty} | dict(args)
        return self.label + (" (" + ", ".join(f"{k} {v}" for k, v in values.items()) + ")" if values else "")


REGISTRIES: dict[str, dict[str, Kind]] = {f: {} for f in FAMILIES}
"""``{family: {name: Kind}}``: specs refer to kinds by these names."""


@dataclass(frozen=True)
class KindTag:
    """What a built module of a registered kind carries (under ``KIND_ATTRIBUTE``): the kind's
    family and name, so drawings and ``modernize.fx`` ask :func:`kind_of` instead of guessing
    from the module's class (a user kind may return an ``nn.GroupNorm`` or an ``nn.Sequential``)."""

    family: str
    name: str


KIND_ATTRIBUTE = "modernize_kind"
"""The public attribute :meth:`Kind.build` sets on every module it returns (a :class:`KindTag`)."""


def kind_of(module: object) -> Kind | None:
    """The registered kind that built ``module``, or None (a plain torch module, or a kind not
    registered in this process, e.g. a model unpickled without its user module imported)."""
    tag = getattr(module, KIND_ATTRIBUTE, None)
    if not isinstance(tag, KindTag):
        return None
    return REGISTRIES.get(tag.family, {}).get(tag.name)


def _source_hash(fn: Callable[..., Any]) -> str:
    """Hash of the source file of the module that defines ``fn``, read when the kind is
    registered, i.e. the code this process runs."""
    try:
        path = inspect.getsourcefile(fn)
        text = Path(path).read_bytes() if path else inspect.getsource(fn).encode()
    except (OSError, TypeError):
        text = f"{fn.__module__}.{fn.__qualname__}".encode()
    return hashlib.sha256(text).hexdigest()[:16]


def _register(family: str, name: str, **kw: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{family} kind name {name!r}: lower-case letters, digits and '_', starting with a letter")
    if kw.get("place", "end") not in PLACES:
        raise ValueError(f"component kind {name!r}: place must be one of {', '.join(PLACES)}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        old = REGISTRIES[family].get(name)
        # The same definition imported again (a reloaded user module) replaces the old one.
        if old is not None and (old.factory.__module__, old.factory.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"{family} kind {name!r} is already registered by {old.factory.__module__}")
        label = kw.pop("label")
        REGISTRIES[family][name] = Kind(family, name, fn, label=label, token=kw.pop("token", None) or label,
                                        own_hash=_source_hash(fn), **kw)
        return fn

    return deco


def register_act(name: str, *, label: str, token: str | None = None, leaf: bool = False
                 ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``factory(**args) -> nn.Module`` as activation ``name`` (``act = name``)."""
    return _register("act", name, label=label, token=token, leaf=leaf)


def register_norm(name: str, *, label: str, token: str | None = None, channels_last: bool = False,
                  check: Callable[..., str | None] | None = None, leaf: bool = False
                  ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``factory(channels, *, layout, **args)`` as norm ``name`` (``norm = name``).
    ``channels_last=True``: ConvNeXt-form blocks run channels-last with this norm (it then gets
    ``layout="NHWC"`` there) and their 1x1 convs become ``nn.Linear``."""
    return _register("norm", name, label=label, token=token, channels_last=channels_last, check=check, leaf=leaf)


def register_component(name: str, *, label: str, token: str | None = None, place: str = "end",
                       channels_last: bool = False, check: Callable[..., str | None] | None = None,
                       leaf: bool = False) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``factory(channels, *, layout, **args)`` as block component ``name``, inserted at
    ``place`` (one of ``PLACES``) unless a spec names another."""
    return _register("component", name, label=label, token=token, place=place, channels_last=channels_last,
                     check=check, leaf=leaf)


def get_kind(family: str, name: str, field: str | None = None) -> Kind:
    try:
        return REGISTRIES[family][name]
    except KeyError:
        where = f"spec field '{field or family}': "
        raise SpecError(f"{where}unknown {family} kind {name!r} (registered: {', '.join(REGISTRIES[family])}; "
                        f"add one with modernize.kinds.register_{family} in a module named in the roadmap's "
                        "'imports')") from None


# --- built-in activations ----------------------------------------------------------------------

@register_act("relu", label="ReLU")
def _relu() -> nn.Module:
    from torch import nn

    return nn.ReLU(inplace=True)


@register_act("gelu", label="GELU")
def _gelu() -> nn.Module:
    from torch import nn

    return nn.GELU()


@register_act("silu", label="SiLU")
def _silu() -> nn.Module:
    from torch import nn

    return nn.SiLU()


@register_act("hardswish", label="Hardswish")
def _hardswish() -> nn.Module:
    from torch import nn

    return nn.Hardswish()


# --- built-in norms ----------------------------------------------------------------------------

@register_norm("batch", label="BatchNorm", token="BN")
def _batch_norm(channels: int, *, layout: str) -> nn.Module:
    from torch import nn

    return nn.BatchNorm1d(channels) if layout == "NC" else nn.BatchNorm2d(channels)


@register_norm("layer", label="LayerNorm", token="LN", channels_last=True)
def _layer_norm(channels: int, *, layout: str) -> nn.Module:
    """``nn.LayerNorm`` on NHWC / NC tensors, torchvision's ``LayerNorm2d`` on NCHW ones (it
    permutes around ``F.layer_norm``; measured 8x faster on CPU than the official ConvNeXt
    "channels_first" form that takes mean and variance over dim 1 by hand)."""
    from torch import nn
    from torchvision.models.convnext import LayerNorm2d

    return LayerNorm2d(channels, eps=LN_EPS) if layout == "NCHW" else nn.LayerNorm(channels, eps=LN_EPS)


def _groups_divide(channels: int, *, groups: int) -> str | None:
    if groups < 1:
        return f"groups must be >= 1, got {groups}"
    return None if channels % groups == 0 else f"GroupNorm's {groups} groups do not divide a width of {channels}"


@register_norm("group", label="GroupNorm", token="GN", check=_groups_divide)
def _group_norm(channels: int, *, layout: str, groups: int = 32) -> nn.Module:
    """GroupNorm (Wu & He 2018), 32 groups by default as in the paper; batch-independent."""
    from torch import nn

    return nn.GroupNorm(groups, channels)


# --- built-in block components -----------------------------------------------------------------

def _se_check(channels: int, *, reduction: int) -> str | None:
    return None if reduction >= 1 else f"squeeze-and-excitation reduction must be >= 1, got {reduction}"


@register_component("se", label="squeeze-and-excitation", token="SE", place="end", check=_se_check)
def _squeeze_excitation(channels: int, *, layout: str, reduction: int = 16) -> nn.Module:
    """Squeeze-and-excitation (Hu et al. 2018) as torchvision ships it: global average pool,
    1x1 conv to ``max(1, channels // reduction)``, ReLU, 1x1 conv back, sigmoid, scale. At
    ``end`` it is SE-ResNet's placement (after the last norm, before the add)."""
    from torchvision.ops import SqueezeExcitation

    return SqueezeExcitation(channels, max(1, channels // reduction))


@register_component("grn", label="global response norm", token="GRN", place="before_last", channels_last=True)
def _grn(channels: int, *, layout: str) -> nn.Module:
    """At ``before_last`` it is ConvNeXt V2's placement (after the GELU, before the last 1x1)."""
    from .layers import GlobalResponseNorm

    return GlobalResponseNorm(channels, channels_last=layout == "NHWC")


__all__ = ["FAMILIES", "KIND_ATTRIBUTE", "PLACES", "REGISTRIES", "Kind", "KindTag", "get_kind", "kind_of",
           "register_act", "register_component", "register_norm"]
