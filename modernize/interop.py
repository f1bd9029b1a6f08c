"""State-dict conversion between ``ModernNet`` and its torchvision twins.

Why: most users start from pretrained torchvision weights (``ResNet50_Weights``,
``ConvNeXt_Tiny_Weights``...). The two ends of a roadmap are exactly those networks, so
their weights can be loaded into our builder (and ours exported back to torchvision)
by renaming keys; the tests check that the logits then agree to float precision.

Twins (structure only: ``num_classes``, ``in_chans``, ``drop_path`` and the value of a
non-zero ``layer_scale`` are ignored): ``BASE_SPECS`` resnet50/101/152 and
convnext_tiny/small/base/large. Intermediate roadmap steps and resnet200 have none.

Every key is mapped, BatchNorm buffers included, and the incoming state dict is checked
key by key and shape by shape: a state dict of the wrong model raises ``SpecError``
instead of loading silently.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType

import torch
import torchvision
from torch import Tensor, nn

from .errors import SpecError
from .model import ModernNet
from .spec import BASE_SPECS, ArchSpec

TWINS: tuple[str, ...] = ("resnet50", "resnet101", "resnet152",
                          "convnext_tiny", "convnext_small", "convnext_base", "convnext_large")
"""Names shared by ``BASE_SPECS`` and ``torchvision.models``."""

Shapes = Mapping[str, torch.Size]

_RESNET_BLOCK = (("conv_pw1", "conv1"), ("norm_pw1", "bn1"), ("conv_kxk", "conv2"), ("norm_kxk", "bn2"),
                 ("conv_pw2", "conv3"), ("norm_pw2", "bn3"), ("shortcut.conv", "downsample.0"),
                 ("shortcut.norm", "downsample.1"))
_CONVNEXT_BLOCK = (("conv_dw", "block.0"), ("norm_dw", "block.2"), ("conv_pw1", "block.3"),
                   ("conv_pw2", "block.5"))


def _structure_of(spec: ArchSpec, like: ArchSpec) -> ArchSpec:
    """``spec`` with the fields that do not change the key layout copied from ``like``."""
    same_ls = (spec.layer_scale > 0) == (like.layer_scale > 0)
    return spec.replace(num_classes=like.num_classes, in_chans=like.in_chans, drop_path=like.drop_path,
                        layer_scale=like.layer_scale if same_ls else spec.layer_scale)


def twin_name(spec: ArchSpec) -> str | None:
    """The torchvision model whose weights fit ``spec`` (e.g. ``"resnet50"``), or None."""
    for name in TWINS:
        if _structure_of(spec, BASE_SPECS[name]) == BASE_SPECS[name]:
            return name
    return None


def _require_twin(spec: ArchSpec) -> str:
    name = twin_name(spec)
    if name is not None:
        return name
    diffs = {n: _structure_of(spec, BASE_SPECS[n]).diff(BASE_SPECS[n]) for n in TWINS}
    closest = min(TWINS, key=lambda n: len(diffs[n]))
    raise SpecError(f"spec has no torchvision twin (closest: {closest}, differs in "
                    f"{', '.join(diffs[closest])}); twins: {', '.join(TWINS)}")


def _adapt_in_chans(weight: Tensor, in_chans: int) -> Tensor:
    """First-conv weights for ``in_chans`` inputs from RGB ones, as timm does: sum the
    filters for one channel, else repeat them and rescale so activations keep their size."""
    have = weight.shape[1]
    if have == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_chans / have)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (have / in_chans)


def torchvision_twin(spec: ArchSpec, **kwargs: object) -> nn.Module:
    """The torchvision model of ``spec``'s twin, with ``num_classes`` (and for ConvNeXt
    ``layer_scale`` and ``stochastic_depth_prob``) from the spec; ``kwargs`` go to the
    torchvision builder (e.g. ``weights=...``). With ``in_chans != 3`` the first conv is
    replaced by one whose weights are adapted from the original's. torchvision's ResNet
    has no stochastic depth, so ``drop_path`` is not carried over there."""
    name = _require_twin(spec)
    if "num_classes" in kwargs:
        raise SpecError("torchvision_twin: num_classes comes from the spec; use spec.replace(num_classes=...)")
    if name.startswith("convnext"):
        kwargs.setdefault("layer_scale", spec.layer_scale)
        kwargs.setdefault("stochastic_depth_prob", spec.drop_path)
    model = torchvision.models.get_model(name, num_classes=spec.num_classes, **kwargs)
    if spec.in_chans != 3:
        parent, attr = (model, "conv1") if name.startswith("resnet") else (model.features[0], "0")
        old: nn.Conv2d = getattr(parent, attr)
        new = nn.Conv2d(spec.in_chans, old.out_channels, old.kernel_size, old.stride, old.padding,
                        bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(_adapt_in_chans(old.weight, spec.in_chans))
            if old.bias is not None:
                new.bias.copy_(old.bias)
        setattr(parent, attr, new)
    return model


def _module_map(spec: ArchSpec, name: str) -> dict[str, str]:
    """Our module path -> torchvision's, for every module that holds a tensor."""
    if name.startswith("resnet"):
        mods = {"stem.conv": "conv1", "stem.norm": "bn1", "head.fc": "fc"}
        for i, depth in enumerate(spec.depths):
            for j in range(depth):
                mods.update({f"stages.{i}.blocks.{j}.{a}": f"layer{i + 1}.{j}.{b}" for a, b in _RESNET_BLOCK})
        return mods
    mods = {"stem.conv": "features.0.0", "stem.norm": "features.0.1",
            "head.norm": "classifier.0", "head.fc": "classifier.2"}
    for i, depth in enumerate(spec.depths):
        if i > 0:
            mods[f"stages.{i}.downsample.norm"] = f"features.{2 * i}.0"
            mods[f"stages.{i}.downsample.conv"] = f"features.{2 * i}.1"
        for j in range(depth):
            mods.update({f"stages.{i}.blocks.{j}.{a}": f"features.{2 * i + 1}.{j}.{b}" for a, b in _CONVNEXT_BLOCK})
    return mods


def _tv_key(our_key: str, mods: dict[str, str]) -> str:
    module, leaf = our_key.rsplit(".", 1)
    if leaf == "gamma":  # a parameter of the block itself: ConvNeXt's layer scale
        block = our_key.split(".")
        return f"features.{2 * int(block[1]) + 1}.{block[3]}.layer_scale"
    return f"{mods[module]}.{leaf}"


@functools.lru_cache(maxsize=32)
def _layouts(spec: ArchSpec) -> tuple[str, Shapes, Shapes, tuple[tuple[str, str], ...]]:
    """Twin name, expected shapes on both sides (read-only), and the (ours, torchvision)
    key pairs in our state-dict order. Both models are built on the meta device (no
    memory, no init); cached because specs are immutable and the error path asks often."""
    name = _require_twin(spec)
    with torch.device("meta"):
        ours = {k: v.shape for k, v in ModernNet(spec).state_dict().items()}
        theirs = {k: v.shape for k, v in torchvision_twin(spec).state_dict().items()}
    mods = _module_map(spec, name)
    pairs = tuple((k, _tv_key(k, mods)) for k in ours)
    if {tv for _, tv in pairs} != set(theirs):  # a bug here, not a user error
        raise AssertionError(f"interop key map out of date for {name}: "
                             f"{sorted({tv for _, tv in pairs} ^ set(theirs))[:5]}")
    return name, MappingProxyType(ours), MappingProxyType(theirs), pairs


def _guess_origin(state_dict: Mapping[str, object]) -> str | None:
    """Which known layout a foreign state dict has, for the error message. Classifier
    and first-conv shapes are not compared (they follow num_classes and in_chans)."""
    def shapes(sd: Mapping[str, object]) -> dict[str, object]:
        return {k: (None if k in free else getattr(v, "shape", v)) for k, v in sd.items()}

    free = {"conv1.weight", "fc.weight", "fc.bias", "features.0.0.weight", "classifier.2.weight",
            "classifier.2.bias", "stem.conv.weight", "head.fc.weight", "head.fc.bias"}
    given = shapes(state_dict)
    for name in TWINS:
        _, ours, theirs, _ = _layouts(BASE_SPECS[name])
        if given == shapes(theirs):
            return f"torchvision {name}"
        if given == shapes(ours):
            return f"ModernNet {name}"
    return None


def _check(state_dict: Mapping[str, object], expected: dict[str, torch.Size], what: str,
           skip: set[str], hints: Mapping[str, str] | None = None) -> None:
    """Raise one clear SpecError unless ``state_dict`` has exactly the keys and shapes of
    ``expected`` (keys in ``skip`` may be absent or present with any shape); ``hints``
    add a remedy to a shape mismatch of that key."""
    if not isinstance(state_dict, Mapping):
        raise SpecError(f"expected a state dict (a mapping of names to tensors), got {type(state_dict).__name__}")
    keys = set(state_dict)
    missing = sorted(set(expected) - keys - skip)
    unexpected = sorted(keys - set(expected) - skip)
    if missing or unexpected:
        origin = _guess_origin(state_dict)
        hint = f"; it looks like a {origin} state dict" if origin else ""
        prefixes = {k.split(".", 1)[0] for k in keys}
        if len(prefixes) == 1 and len(keys) > 1:  # e.g. 'module.' (DDP) or '_orig_mod.' (torch.compile)
            p = prefixes.pop()
            hint += f"; every key starts with '{p}.', strip that prefix first"
        parts = [f"{len(missing)} keys missing (e.g. {missing[0]!r})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})" if unexpected else ""]
        raise SpecError(f"state dict does not match {what}: {', '.join(p for p in parts if p)}{hint}")
    for key, shape in expected.items():
        if key in skip or key not in state_dict:
            continue
        value = state_dict[key]
        if not isinstance(value, Tensor):
            raise SpecError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.shape != shape:
            hint = (hints or {}).get(key, "")
            if not hint and (origin := _guess_origin(state_dict)):
                hint = f"; it looks like a {origin} state dict"
            raise SpecError(f"state dict does not match {what}: {key!r} has shape {tuple(value.shape)}, "
                            f"expected {tuple(shape)}{hint}")


def from_torchvision(state_dict: Mapping[str, Tensor], spec: ArchSpec, *, adapt_in_chans: bool = False,
                     skip_classifier: bool = False) -> OrderedDict[str, Tensor]:
    """A torchvision twin's state dict (e.g. pretrained ``resnet50`` weights) renamed for
    ``build_model(spec)``, ready for ``load_state_dict(strict=True)``.

    ``adapt_in_chans``: RGB first-conv weights are summed / repeated to ``spec.in_chans``
    (otherwise a channel mismatch is an error). ``skip_classifier``: the final linear
    layer (``fc`` / ``classifier.2``) is dropped whatever its shape, for fine-tuning to
    another ``num_classes``; load with ``strict=False`` and expect ``head.fc`` missing.
    The tensors are shared with the input, not copied.
    """
    name, ours, theirs, pairs = _layouts(spec)
    stem = "conv1.weight" if name.startswith("resnet") else "features.0.0.weight"
    fc = {"fc.weight", "fc.bias"} if name.startswith("resnet") else {"classifier.2.weight", "classifier.2.bias"}
    what = f"torchvision {name} (num_classes={spec.num_classes}, in_chans={spec.in_chans})"
    expected = dict(theirs)
    given = state_dict.get(stem) if isinstance(state_dict, Mapping) else None
    if isinstance(given, Tensor) and given.dim() == 4:  # input channels are checked below
        expected[stem] = torch.Size((*expected[stem][:1], given.shape[1], *expected[stem][2:]))
    retarget = "; pass skip_classifier=True to fine-tune to another num_classes"
    _check(state_dict, expected, what, fc if skip_classifier else set(), dict.fromkeys(fc, retarget))
    if state_dict[stem].shape[1] != spec.in_chans and not adapt_in_chans:
        raise SpecError(f"state dict does not match {what}: '{stem}' takes {state_dict[stem].shape[1]} input "
                        f"channels; pass adapt_in_chans=True to adapt them to {spec.in_chans}")
    out: OrderedDict[str, Tensor] = OrderedDict()
    for our_key, tv_key in pairs:
        if skip_classifier and tv_key in fc:
            continue
        value = state_dict[tv_key]
        if tv_key == stem:
            value = _adapt_in_chans(value, spec.in_chans)
        out[our_key] = value.reshape(ours[our_key])  # only layer scale changes: (C, 1, 1) -> (C,)
    return out


def to_torchvision(state_dict: Mapping[str, Tensor], spec: ArchSpec) -> OrderedDict[str, Tensor]:
    """A ``build_model(spec)`` state dict renamed for ``torchvision_twin(spec)`` (e.g. to
    share a trained model with code that expects torchvision). Tensors are shared, not copied."""
    name, ours, theirs, pairs = _layouts(spec)
    _check(state_dict, ours, f"ModernNet {name} (num_classes={spec.num_classes}, in_chans={spec.in_chans})",
           set())
    order = {tv_key: our_key for our_key, tv_key in pairs}
    return OrderedDict((tv_key, state_dict[order[tv_key]].reshape(shape)) for tv_key, shape in theirs.items())


__all__ = ["TWINS", "from_torchvision", "to_torchvision", "torchvision_twin", "twin_name"]
