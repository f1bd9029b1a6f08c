"""torchvision <-> ModernNet weight conversion, checked on the logits.

Every parameter and buffer is randomized before a comparison: at init the layer scale is
1e-6 and BatchNorm is the identity, which would hide wrong wiring. BatchNorm statistics
are calibrated on one batch and then jittered, so that eval-mode activations stay O(1)
through 50 layers (raw random statistics make a ResNet's activations explode).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch
import torchvision
from torch import nn

from modernize import SpecError, build_model, from_torchvision, load_roadmap, to_torchvision
from modernize.interop import TWINS, torchvision_twin, twin_name
from modernize.model import ModernNet
from modernize.spec import BASE_SPECS, ArchSpec

TOL = 1e-5
R50 = load_roadmap("resnet50_to_convnext_t")
R200 = load_roadmap("resnet200_to_convnext_b")
RESNET50, CONVNEXT_T = R50[0].spec, R50[-1].spec


def empty(builder: Callable[[], nn.Module]) -> nn.Module:
    """A model with uninitialized CPU tensors: built on the meta device, so no init cost."""
    with torch.device("meta"):
        model = builder()
    return model.to_empty(device="cpu")


def loaded(builder: Callable[[], nn.Module], state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """A model that takes ``state_dict``'s tensors as they are (strict: every key, every shape)."""
    with torch.device("meta"):
        model = builder()
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model


@torch.no_grad()
def randomize_(model: nn.Module, seed: int, in_chans: int = 3) -> nn.Module:
    """Random values for every parameter and buffer, at scales that keep activations O(1)."""
    g = torch.Generator().manual_seed(seed)
    bn_weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        elif name in bn_weights:  # small: ReLU makes the residual stream's mean grow block after block
            p.copy_(0.25 + 0.5 * torch.rand(p.shape, generator=g))
        elif name.endswith(("layer_scale", "gamma")) or p.dim() == 1:  # layer scale, LayerNorm weights
            p.copy_(0.5 + torch.rand(p.shape, generator=g))
        else:  # conv / linear: variance-preserving
            p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:  # calibrate the running statistics on one batch, then jitter them
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        model(torch.randn(2, in_chans, 128, 128, generator=g))
        for bn in bns:
            bn.momentum = 0.1
            bn.running_var.mul_(0.7 + 0.6 * torch.rand(bn.running_var.shape, generator=g))
            bn.running_mean.add_(0.1 * torch.randn(bn.running_mean.shape, generator=g) * bn.running_var.sqrt())
            bn.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (), generator=g)))
    return model.eval()


@torch.no_grad()
def max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """Max abs difference of the logits of ``a`` on x and ``b`` on y (default x)."""
    out_a, out_b = a.eval()(x), b.eval()(x if y is None else y)
    assert out_a.shape == out_b.shape
    assert 0.1 < out_a.abs().max() < 100, "degenerate or exploding logits would hide wiring errors"
    return (out_a - out_b).abs().max().item()


def inputs(size: int = 64, chans: int = 3) -> torch.Tensor:
    return torch.randn(2, chans, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("spec", "tv_builder", "size"), [
    (RESNET50, torchvision.models.resnet50, 64), (RESNET50, torchvision.models.resnet50, 224),
    (CONVNEXT_T, torchvision.models.convnext_tiny, 64), (CONVNEXT_T, torchvision.models.convnext_tiny, 224),
], ids=["resnet50-64px", "resnet50-224px", "convnext_t-64px", "convnext_t-224px"])
def test_from_torchvision_same_logits(spec: ArchSpec, tv_builder: Callable[[], nn.Module], size: int) -> None:
    tv = randomize_(empty(tv_builder), seed=1)
    ours = loaded(partial(build_model, spec), from_torchvision(tv.state_dict(), spec))
    diff = max_diff(ours, tv, inputs(size))
    print(f"from_torchvision {tv_builder.__name__} {size}px: max abs logit diff {diff:.3g}")
    assert diff <= TOL


@pytest.mark.parametrize("spec", [RESNET50, CONVNEXT_T], ids=["resnet50", "convnext_t"])
def test_to_torchvision_same_logits(spec: ArchSpec) -> None:
    ours = randomize_(empty(partial(build_model, spec)), seed=2)
    tv = loaded(partial(torchvision.models.get_model, twin_name(spec)), to_torchvision(ours.state_dict(), spec))
    diff = max_diff(ours, tv, inputs())
    print(f"to_torchvision {twin_name(spec)}: max abs logit diff {diff:.3g}")
    assert diff <= TOL


@pytest.mark.parametrize("spec", [RESNET50, CONVNEXT_T], ids=["resnet50", "convnext_t"])
def test_round_trip_keeps_every_tensor(spec: ArchSpec) -> None:
    tv_sd = randomize_(empty(partial(torchvision_twin, spec)), seed=3).state_dict()
    back = to_torchvision(from_torchvision(tv_sd, spec), spec)
    assert list(back) == list(tv_sd)
    assert all(torch.equal(back[k], tv_sd[k]) for k in tv_sd)  # BN buffers included


@pytest.mark.parametrize("spec", [RESNET50, CONVNEXT_T], ids=["resnet50", "convnext_t"])
def test_other_num_classes_and_in_chans_both_ways(spec: ArchSpec) -> None:
    spec = spec.replace(num_classes=10, in_chans=1, drop_path=0.1, layer_scale=spec.layer_scale and 0.5)
    assert twin_name(spec) in {"resnet50", "convnext_tiny"}
    tv = randomize_(empty(partial(torchvision_twin, spec)), seed=4, in_chans=1)
    ours = loaded(partial(build_model, spec), from_torchvision(tv.state_dict(), spec))
    diffs = [max_diff(ours, tv, inputs(chans=1))]
    ours = randomize_(empty(partial(build_model, spec)), seed=5, in_chans=1)
    tv = loaded(partial(torchvision_twin, spec), to_torchvision(ours.state_dict(), spec))
    diffs.append(max_diff(ours, tv, inputs(chans=1)))
    print(f"{twin_name(spec)} num_classes=10 in_chans=1: max abs logit diff from/to {diffs[0]:.3g}/{diffs[1]:.3g}")
    assert max(diffs) <= TOL


def test_pretrained_rgb_weights_into_grayscale_and_new_classifier() -> None:
    """The fine-tuning path: 3-channel, 1000-class weights into a 1-channel, 10-class spec.
    Summed RGB filters on a gray image equal the RGB model on that image repeated 3x."""
    # float64 throughout: summing the filters first is exact math, not the same float32 rounding
    tv = randomize_(empty(torchvision.models.resnet50), seed=6).double()
    spec = RESNET50.replace(num_classes=10, in_chans=1)
    with pytest.raises(SpecError, match="adapt_in_chans=True"):
        from_torchvision(tv.state_dict(), spec.replace(num_classes=1000))
    with pytest.raises(SpecError, match="skip_classifier=True"):
        from_torchvision(tv.state_dict(), spec, adapt_in_chans=True)
    sd = from_torchvision(tv.state_dict(), spec, adapt_in_chans=True, skip_classifier=True)
    ours = build_model(spec).double()
    result = ours.load_state_dict(sd, strict=False)
    assert sorted(result.missing_keys) == ["head.fc.bias", "head.fc.weight"] and not result.unexpected_keys
    ours.head.fc = tv.fc  # same features -> same logits
    gray = inputs(chans=1).double()
    diff = max_diff(ours, tv, gray, gray.expand(-1, 3, -1, -1))
    print(f"resnet50 RGB -> gray (adapt_in_chans, float64): max abs logit diff {diff:.3g}")
    assert diff <= 1e-9


@pytest.mark.parametrize("spec", [BASE_SPECS["resnet200"], R50["depthwise"].spec, R50["bn_to_ln"].spec,
                                  R200["stage_ratio_widen"].spec],
                         ids=["resnet200", "depthwise", "bn_to_ln", "r200_step"])
def test_no_twin_is_one_clear_line(spec: ArchSpec) -> None:
    assert twin_name(spec) is None
    with torch.device("meta"):
        sd = torchvision.models.resnet50().state_dict()
    for call in (lambda: from_torchvision(sd, spec), lambda: to_torchvision(sd, spec), lambda: torchvision_twin(spec)):
        with pytest.raises(SpecError, match=r"^spec has no torchvision twin .*; twins: resnet50, resnet101") as info:
            call()
        assert "\n" not in str(info.value)


def test_wrong_state_dict_is_refused() -> None:
    with torch.device("meta"):
        r101, cnb = torchvision.models.resnet101().state_dict(), torchvision.models.convnext_base().state_dict()
        ours = ModernNet(RESNET50).state_dict()
    cases = [
        (r101, RESNET50, from_torchvision, "unexpected .*looks like a torchvision resnet101"),
        (cnb, BASE_SPECS["convnext_small"], from_torchvision, "has shape .*looks like a torchvision convnext_base"),
        (ours, RESNET50, from_torchvision, "looks like a ModernNet resnet50"),
        (r101, RESNET50, to_torchvision, "does not match ModernNet resnet50"),
        ({f"module.{k}": v for k, v in ours.items()}, RESNET50, to_torchvision, "strip that prefix"),
        ({k: v for k, v in ours.items() if "running_var" not in k}, RESNET50, to_torchvision, "keys missing"),
    ]
    for sd, spec, convert, message in cases:
        with pytest.raises(SpecError, match=message) as info:
            convert(sd, spec)
        assert "\n" not in str(info.value)


def test_twin_ignores_only_non_structural_fields() -> None:
    assert twin_name(R50[1].spec) == "resnet50"  # the recipe-only step
    assert twin_name(CONVNEXT_T.replace(layer_scale=0.1, drop_path=0.2, num_classes=5, in_chans=4)) == "convnext_tiny"
    assert twin_name(CONVNEXT_T.replace(layer_scale=0.0)) is None  # no layer-scale parameter at all
    assert twin_name(RESNET50.replace(layer_scale=1e-6)) is None
    assert twin_name(RESNET50.replace(kernel_size=5)) is None


@pytest.mark.parametrize("name", TWINS)
def test_every_twin_maps_every_key_strictly(name: str) -> None:
    """Key map and shapes for all seven twins, on the meta device (no memory, no init)."""
    spec = BASE_SPECS[name]
    with torch.device("meta"):
        tv, ours = torchvision.models.get_model(name), ModernNet(spec)
    converted, back = from_torchvision(tv.state_dict(), spec), to_torchvision(ours.state_dict(), spec)
    for got, want in ((converted, ours.state_dict()), (back, tv.state_dict())):
        assert list(got) == list(want)
        assert all(got[k].shape == want[k].shape for k in want)
    ours.load_state_dict(converted, strict=True, assign=True)
    tv.load_state_dict(back, strict=True, assign=True)


def test_convnext_base_twin_is_the_end_of_the_resnet200_roadmap() -> None:
    last = R200[-1].spec
    assert twin_name(last) == "convnext_base"
    with torch.device("meta"):
        tv, ours = torchvision.models.convnext_base(), build_model(last)
    ours.load_state_dict(from_torchvision(tv.state_dict(), last), strict=True, assign=True)
    tv.load_state_dict(to_torchvision(ours.state_dict(), last), strict=True, assign=True)
