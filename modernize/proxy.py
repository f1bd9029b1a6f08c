"""Proxy scale and low-resolution mode: pure ``ArchSpec -> ArchSpec`` functions applied to
every step's spec in the same way, so a whole roadmap shrinks consistently.

Why per step and not "scale the base, re-run the transforms": transforms such as
``widen(width=96)`` take absolute widths, so re-running them on a scaled base would undo the
scaling. Multiplying every step's channel counts by the same factor keeps each step's
*relative* change (x1.5 wider, 4x inverted, ...) exactly as the paper has it.

Low-resolution mode gives every stem the same total stride (default 2 instead of 4), so 28-32
px inputs keep a 2x2 map at the last stage instead of collapsing to 1x1:

* ``conv_pool`` (ResNet): 7x7/2 conv + 3x3/2 max-pool becomes a 3x3/1 conv, plus the max-pool
  only when the target stride is 2 (stride 1: no pool), as in CIFAR ResNets.
* ``patchify``: the kxk/k patch conv becomes an sxs/s patch conv (s = target stride).

Two optional rules keep a narrow, shallow proxy's optimisation closer to the paper-scale
model's (both off by default, both applied to every step alike; see ``reports/proxy_study``):

* ``init="width"``: weight std ``0.02 / sqrt(width)``. With fan-in ``width`` times smaller, a
  layer's output scale is ``sqrt(fan_in) * std``; this keeps it what it is at paper width, so
  the residual branches carry the same signal relative to the shortcut.
* ``layer_scale=v``: every step that has a layer scale starts it at ``v`` instead of the
  paper's 1e-6. 1e-6 is CaiT's choice for very deep nets (CaiT uses 0.1 up to 18 blocks), and
  a proxy of a few blocks trained for a few hundred iterations barely moves a 1e-6 gate. The
  presets use 1.0: every residual branch starts at full strength, as if there were no gate
  (the measurements behind this choice: ``reports/proxy_study/README.md``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from .errors import ConfigError
from .spec import ArchSpec


@dataclass(frozen=True)
class ProxyScale:
    """How a run shrinks the paper's networks. ``width=1, depth=1, stem_stride=None`` is the
    paper's own scale."""

    width: float = 1.0
    depth: float = 1.0
    stem_stride: int | None = None
    """Total stem stride in low-res mode (1 or 2); None keeps the paper's stems (stride 4)."""
    init: Literal["paper", "width"] = "paper"
    """'paper': std 0.02 at every width; 'width': std 0.02 / sqrt(width) (see module doc)."""
    layer_scale: float | None = None
    """Layer-scale init for the steps that have one; None keeps the step's own (1e-6)."""

    def __post_init__(self) -> None:
        if not (0 < self.width <= 4):
            raise ConfigError(f"proxy width multiplier must be in (0, 4], got {self.width}")
        if not (0 < self.depth <= 4):
            raise ConfigError(f"proxy depth multiplier must be in (0, 4], got {self.depth}")
        if self.stem_stride not in (None, 1, 2, 4):
            raise ConfigError(f"low-res stem stride must be 1, 2 or 4 (or none), got {self.stem_stride}")
        if self.init not in ("paper", "width"):
            raise ConfigError(f"proxy init rule must be 'paper' or 'width', got {self.init!r}")
        if self.layer_scale is not None and not (math.isfinite(self.layer_scale) and 0 < self.layer_scale <= 1):
            raise ConfigError(f"proxy layer-scale init must be in (0, 1], got {self.layer_scale}")

    @property
    def is_identity(self) -> bool:
        return (self.width == 1 and self.depth == 1 and self.stem_stride is None and self.init == "paper"
                and self.layer_scale is None)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def apply(self, spec: ArchSpec) -> ArchSpec:
        """The same rules for every step: nothing here may look at which step ``spec`` is."""
        out = low_res(scale(spec, width=self.width, depth=self.depth), stem_stride=self.stem_stride)
        if self.init == "width" and self.width != 1:
            out = out.replace(init_std=spec.init_std / math.sqrt(self.width))
        if self.layer_scale is not None and out.layer_scale > 0:
            out = out.replace(layer_scale=self.layer_scale)
        return out


CPU_PROXY = ProxyScale(width=0.25, depth=0.34, stem_stride=2)
"""A quarter of the channels, a third of the blocks, stem stride 2 (28-32 px inputs)."""

FIDELITY_PROXY = ProxyScale(width=0.25, depth=0.34, init="width", layer_scale=1.0)
"""The proxy study's rules (reports/proxy_study): a quarter of the channels, a third of the
blocks, the paper's stride-4 stems, width-aware init, layer scale 1.0. Feed it 64 px or more:
at 64 px the stages see 16/8/4/2 pixels, as ``fidelity32`` at 32 px; at 128 px they see
32/16/8/4 and the stem and kernel-size steps follow the paper, at about 3.3x the time of 64 px
(``reports/proxy_study/README.md``)."""
FIDELITY32_PROXY = ProxyScale(width=0.25, depth=0.34, stem_stride=2, init="width", layer_scale=1.0)
"""The same rules with stem stride 2 for 32-px inputs (half the input pixels of ``fidelity``)."""

PROXIES: dict[str, ProxyScale] = {"cpu": CPU_PROXY, "fidelity": FIDELITY_PROXY, "fidelity32": FIDELITY32_PROXY}
"""Named proxy scales (``train --proxy NAME``, a recipe's ``proxy`` key)."""


def proxy_preset(name: str) -> ProxyScale:
    try:
        return PROXIES[name]
    except KeyError:
        raise ConfigError(f"--proxy {name!r}: unknown proxy preset (valid: {', '.join(PROXIES)})") from None


def proxy_label(proxy: ProxyScale) -> str:
    """A proxy's preset name (``fidelity32``), else its rules in words."""
    name = next((n for n, p in PROXIES.items() if p == proxy), None)
    if name:
        return name
    if proxy.is_identity:
        return "none (the paper's scale)"
    return ", ".join(f"{k} {v}" for k, v in proxy.to_dict().items() if v not in (None, 1.0, "paper"))


def _channels(c: int, mult: float, quantum: int) -> int:
    """``c * mult`` rounded to a multiple of ``quantum`` (at least ``quantum``)."""
    return max(quantum, int(round(c * mult / quantum)) * quantum)


def scale(spec: ArchSpec, *, width: float = 1.0, depth: float = 1.0) -> ArchSpec:
    """Every channel count times ``width`` and every stage depth times ``depth`` (>= 1 block).

    Bottleneck dims stay multiples of the expansion, so their hidden widths scale by the same
    factor; the stem and first stage keep their equality where separate downsampling needs it."""
    if width == 1 and depth == 1:
        return spec
    quantum = spec.expansion if spec.block == "bottleneck" else 1
    dims = tuple(_channels(d, width, quantum) for d in spec.dims)
    stem_width = _channels(spec.stem_width, width, 1)
    if spec.stem_width == spec.dims[0]:
        stem_width = dims[0]
    depths = tuple(max(1, int(round(d * depth))) for d in spec.depths)
    return spec.replace(dims=dims, stem_width=stem_width, depths=depths)


def low_res(spec: ArchSpec, *, stem_stride: int | None) -> ArchSpec:
    """Give the stem a total stride of ``stem_stride`` whatever its kind (None: unchanged)."""
    if stem_stride is None or stem_stride == spec.stem_total_stride:
        return spec
    if spec.stem == "conv_pool":
        pool = stem_stride >= 2
        return spec.replace(stem_kernel=3, stem_stride=stem_stride // 2 if pool else 1, stem_pool=pool)
    return spec.replace(stem_kernel=stem_stride, stem_stride=stem_stride)


__all__ = ["CPU_PROXY", "FIDELITY32_PROXY", "FIDELITY_PROXY", "PROXIES", "ProxyScale", "low_res",
           "proxy_label", "proxy_preset", "scale"]
