"""The builder: one configurable model class for every spec of the roadmap.

Module names follow the official ConvNeXt / timm style so that a newcomer can find any
piece of the paper in ``model.named_modules()``::

    stem.conv, stem.norm, stem.act, stem.pool
    stages.N.downsample.{norm,conv}                         (separate downsampling)
    stages.N.blocks.M.{conv_pw1,conv_dw|conv_kxk,conv_pw2}  (the three convs, in order)
    stages.N.blocks.M.norm_<conv>, act_<conv>, act_out      (norm/act after that conv)
    stages.N.blocks.M.shortcut.{conv,norm}, gamma, drop_path
    stages.N.blocks.M.<kind>_<place>                        (block components, e.g. se_end)
    head.pool, head.norm, head.fc

Activations, norms and block components come from the registries of ``modernize.kinds``.
The forward has no Python control flow on tensors, so ``torch.fx.symbolic_trace`` and
torchvision's ``create_feature_extractor`` accept every model (see ``modernize.fx``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.fx
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from .errors import SpecError
from .kinds import LN_EPS, get_kind
from .spec import ArchSpec

__all__ = ["LN_EPS", "Block", "ModernNet", "build_model", "make_act", "make_norm", "make_stem"]

_NHWC, _NCHW = ":nhwc", ":nchw"
"""Branch entries that permute (not modules, so module names stay those of the paper's steps)."""


def make_norm(spec: ArchSpec, channels: int, *, layout: str = "NCHW") -> nn.Module:
    """The spec's norm kind for a ``layout`` tensor ("NCHW", "NHWC" in a channels-last block,
    "NC" in the head). Like torchvision, LayerNorm is ``nn.LayerNorm`` on NHWC tensors inside a
    block (one permute serves the norm and both 1x1 convs) and ``LayerNorm2d`` elsewhere."""
    return get_kind("norm", spec.norm).build(channels, layout=layout, **dict(spec.norm_args))


def make_act(spec: ArchSpec) -> nn.Module:
    return get_kind("act", spec.act).build(**dict(spec.act_args))


def channels_last_block(spec: ArchSpec) -> bool:
    """ConvNeXt form: kxk conv on top and a norm kind registered ``channels_last`` (LayerNorm)."""
    return spec.spatial_pos == "top" and get_kind("norm", spec.norm).channels_last


def _residual_add(x: Tensor, shortcut: Tensor) -> Tensor:
    """``x + shortcut``, in place as torchvision does where that is safe (same ATen ops and
    counts under torch.profiler; one activation-sized buffer per block never allocated; no
    backward needs the branch output). Out of place where x is a view (autograd would add a
    CopySlices copy in backward) or where the dtypes differ (bf16 autocast: the sum must not be
    rounded to the narrower type). A leaf of FX graphs (``torch.fx.wrap``): the test is on a
    tensor's properties, which a symbolic trace cannot see."""
    if x.dtype == shortcut.dtype and not x._is_view():
        x += shortcut
        return x
    return x + shortcut


torch.fx.wrap("_residual_add")


class Block(nn.Module):
    """One residual block of any step: three convs in spec order, norms and activations
    where the spec puts them, optional layer scale and stochastic depth, then the add.

    When the block is ConvNeXt-like (kxk conv on top, LayerNorm) everything after the kxk
    conv runs channels-last with ``nn.Linear`` as the 1x1 convs: the official ConvNeXt
    form, which is faster on both CPU and GPU than 1x1 ``Conv2d`` plus two permutes per
    norm. In every other case the block stays NCHW with ``Conv2d`` 1x1 convs.

    Layer scale multiplies the NCHW view (``gamma.view(-1, 1, 1)``, like torchvision's
    ``layer_scale``); scaling the NHWC tensor before the permute back measured the same on
    CPU (8.1 vs 7.2 ms, ranges overlapping), so we keep torchvision's op sequence.
    """

    def __init__(self, spec: ArchSpec, in_dim: int, out_dim: int, stride: int, drop_path: float) -> None:
        super().__init__()
        hidden = out_dim // spec.expansion if spec.block == "bottleneck" else out_dim * spec.expansion
        k = spec.kernel_size
        spatial = "conv_dw"
        top = spec.spatial_pos == "top"
        channels_last = channels_last_block(spec)
        # (name, in, out, kernel, stride); the kxk conv is named conv_dw when depthwise.
        if top:
            convs = [("spatial", in_dim, in_dim, k, stride), ("conv_pw1", in_dim, hidden, 1, 1),
                     ("conv_pw2", hidden, out_dim, 1, 1)]
        else:
            convs = [("conv_pw1", in_dim, hidden, 1, 1), ("spatial", hidden, hidden, k, stride),
                     ("conv_pw2", hidden, out_dim, 1, 1)]
        groups_of = (lambda c: c) if spec.groups == "depthwise" else (lambda c: spec.groups)
        branch: list[str] = []
        layout = "NCHW"
        for i, (name, cin, cout, ksize, s) in enumerate(convs):
            if i == len(convs) - 1:
                layout = self._components(spec, "before_last", cin, branch, layout)
            if name == "spatial":
                g = groups_of(cin)
                name = "conv_dw" if g == cin and cin > 1 else "conv_kxk"
                conv: nn.Module = nn.Conv2d(cin, cout, ksize, s, ksize // 2, groups=g, bias=spec.conv_bias)
                spatial = name
            elif channels_last:
                conv = nn.Linear(cin, cout, bias=spec.conv_bias)
            else:
                conv = nn.Conv2d(cin, cout, 1, bias=spec.conv_bias)
            self.add_module(name, conv)
            branch.append(name)
            if channels_last and i == 0:
                branch.append(_NHWC)
                layout = "NHWC"
            suffix = name.removeprefix("conv_")
            if spec.norms == "every_conv" or name == spatial:
                self.add_module(f"norm_{suffix}", make_norm(spec, cout, layout=layout))
                branch.append(f"norm_{suffix}")
            last = i == len(convs) - 1
            if (spec.acts == "every_conv" and not last) or (spec.acts == "one" and name == "conv_pw1"):
                self.add_module(f"act_{suffix}", make_act(spec))
                branch.append(f"act_{suffix}")
            if name == spatial:
                layout = self._components(spec, "after_spatial", cout, branch, layout)
        if layout == "NHWC":
            branch.append(_NCHW)
        self._components(spec, "end", out_dim, branch, "NCHW")
        self._branch = tuple(branch)  # names of registered modules, in order, and permutes
        self.gamma = nn.Parameter(torch.full((out_dim,), spec.layer_scale)) if spec.layer_scale > 0 else None
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        if stride != 1 or in_dim != out_dim:
            self.shortcut: nn.Module = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_dim, out_dim, 1, stride, bias=spec.conv_bias),
                norm=make_norm(spec, out_dim)))
        else:
            self.shortcut = nn.Identity()
        self.act_out = make_act(spec) if spec.acts == "every_conv" else nn.Identity()

    def _components(self, spec: ArchSpec, place: str, channels: int, branch: list[str], layout: str) -> str:
        """Add the spec's components at ``place``; an NCHW-only kind in a channels-last block gets
        permutes around it. Returns the layout after them (the one before)."""
        before = layout
        for comp in spec.components:
            if comp.at != place:
                continue
            kind = get_kind("component", comp.kind)
            if layout == "NHWC" and not kind.channels_last:
                branch.append(_NCHW)
                layout = "NCHW"
            self.add_module(comp.module_name, kind.build(channels, layout=layout, **dict(comp.args)))
            branch.append(comp.module_name)
        if layout != before:
            branch.append(_NHWC)  # back to channels-last for the rest of the block
        return before

    def layers(self) -> list[nn.Module]:
        """The residual branch's modules in order (what ``describe`` draws)."""
        return [getattr(self, name) for name in self._branch if not name.startswith(":")]

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.shortcut(x)
        for name in self._branch:
            if name == _NHWC:
                x = x.permute(0, 2, 3, 1)
            elif name == _NCHW:
                x = x.permute(0, 3, 1, 2)
            else:
                x = getattr(self, name)(x)
        if self.gamma is not None:
            x = x * self.gamma.view(-1, 1, 1)
        x = self.drop_path(x)
        return self.act_out(_residual_add(x, shortcut))


class Stage(nn.Module):
    def __init__(self, downsample: nn.Module, blocks: list[Block]) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class Head(nn.Module):
    """Global average pool -> optional norm -> linear classifier."""

    def __init__(self, spec: ArchSpec, dim: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        if spec.head_norm:
            self.norm: nn.Module = make_norm(spec, dim, layout="NC")
        else:
            self.norm = nn.Identity()
        self.fc = nn.Linear(dim, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.norm(self.flatten(self.pool(x))))


def make_stem(spec: ArchSpec) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    k, s, w = spec.stem_kernel, spec.stem_stride, spec.stem_width
    if spec.stem == "conv_pool":
        layers["conv"] = nn.Conv2d(spec.in_chans, w, k, s, k // 2, bias=False)
        if spec.stem_norm:
            layers["norm"] = make_norm(spec, w)
        layers["act"] = make_act(spec)
        if spec.stem_pool:
            layers["pool"] = nn.MaxPool2d(3, 2, 1)
    else:  # patchify: non-overlapping kxk patches when kernel == stride
        layers["conv"] = nn.Conv2d(spec.in_chans, w, k, s, bias=True)
        if spec.stem_norm:
            layers["norm"] = make_norm(spec, w)
    return nn.Sequential(layers)


class ModernNet(nn.Module):
    """The network described by an ``ArchSpec`` (ResNet-50 ... ConvNeXt-T and beyond)."""

    def __init__(self, spec: ArchSpec, *, init: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.stem = make_stem(spec)
        rates = (torch.linspace(0, spec.drop_path, spec.num_blocks, device="cpu").tolist()
                 if spec.num_blocks > 1 else [spec.drop_path])
        stages, prev, b = [], spec.stem_width, 0
        for i, (depth, dim) in enumerate(zip(spec.depths, spec.dims)):
            if spec.downsample == "separate" and i > 0:
                downsample: nn.Module = nn.Sequential(OrderedDict(
                    norm=make_norm(spec, prev), conv=nn.Conv2d(prev, dim, 2, 2, bias=True)))
                prev, first_stride = dim, 1
            else:
                downsample, first_stride = nn.Identity(), (2 if (i > 0 and spec.downsample == "in_block") else 1)
            blocks = []
            for j in range(depth):
                blocks.append(Block(spec, prev, dim, first_stride if j == 0 else 1, rates[b]))
                prev, b = dim, b + 1
            stages.append(Stage(downsample, blocks))
        self.stages = nn.Sequential(*stages)
        self.head = Head(spec, prev)
        if init:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """ConvNeXt's init for every step (truncated normal, std ``spec.init_std`` = 0.02; zero biases; unit
        norms; layer scale at ``spec.layer_scale``), so that only the architecture changes
        along the roadmap. Initializes every parameter and buffer (``build_model`` builds
        on the meta device and relies on this)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=self.spec.init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
            elif isinstance(m, Block):
                if m.gamma is not None:
                    nn.init.constant_(m.gamma, self.spec.layer_scale)
            elif any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
                # A registered kind's own tensors (GroupNorm, GRN, a user module): its reset_parameters.
                reset = getattr(m, "reset_parameters", None)
                if not callable(reset):
                    raise SpecError(f"{type(m).__name__} has parameters or buffers of its own but no "
                                    "reset_parameters(); a registered kind's module needs one (modernize.kinds)")
                reset()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


def build_model(spec: ArchSpec, *, num_classes: int | None = None, device: torch.device | str = "cpu",
                **overrides: object) -> ModernNet:
    """Build the model of ``spec``; ``num_classes`` and other spec fields may be overridden
    (e.g. ``in_chans=1``, ``drop_path=0.1``) without touching the roadmap.

    Modules are created on the meta device and materialized once on ``device`` before
    ``reset_parameters``: PyTorch's default per-layer init would be thrown away anyway, and
    skipping it halves the build time of the 90M-parameter ResNet-200 steps."""
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if overrides:
        spec = spec.replace(**overrides)
    with torch.device("meta"):
        model = ModernNet(spec, init=False)
    if str(device) == "meta":
        return model
    model.to_empty(device=device)
    model.reset_parameters()
    return model
