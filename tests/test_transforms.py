"""Every transform: what it changes, what it needs first, and the registry."""

from __future__ import annotations

import pytest

import modernize
from modernize import ConfigError, PreconditionError, SpecError, base_spec, get_transform
from modernize.transforms import TRANSFORMS, register_transform

from .conftest import load


def test_every_transform_is_documented() -> None:
    for t in TRANSFORMS.values():
        assert t.label and len(t.doc.splitlines()) >= 1, t.name


@pytest.mark.parametrize("name", [s.name for s in load("resnet50_to_convnext_t")])
def test_each_step_changes_only_what_its_transforms_say(name: str) -> None:
    roadmap = load("resnet50_to_convnext_t")
    step = roadmap[name]
    parent = roadmap[step.parent].spec if step.parent else roadmap.base
    changed = set(parent.diff(step.spec))
    expected = {
        "resnet50": set(), "recipe": set(), "stage_ratio": {"depths"},
        "patchify_stem": {"stem", "stem_kernel", "stem_stride", "stem_pool", "stem_norm"},
        "depthwise": {"groups"}, "widen": {"stem_width", "dims"}, "inverted_bottleneck": {"block", "dims"},
        "move_up_dwconv": {"spatial_pos"}, "kernel_5": {"kernel_size"}, "kernel_7": {"kernel_size"},
        "kernel_9": {"kernel_size"}, "kernel_11": {"kernel_size"}, "gelu": {"act"},
        "fewer_activations": {"acts"}, "fewer_norms": {"norms"}, "bn_to_ln": {"norm", "conv_bias"},
        "separate_downsampling": {"downsample", "stem_norm", "head_norm", "layer_scale"},
    }[name]
    assert changed == expected


def test_branches_start_from_move_up_and_chain_continues_from_kernel_7() -> None:
    roadmap = load("resnet50_to_convnext_t")
    for k in (5, 7, 9, 11):
        assert roadmap[f"kernel_{k}"].parent == "move_up_dwconv"
        assert roadmap[f"kernel_{k}"].spec.kernel_size == k
    assert roadmap["move_up_dwconv"].spec.kernel_size == 3
    assert roadmap["gelu"].parent == "kernel_7"
    assert [s.name for s in roadmap if not s.adopted] == ["kernel_5", "kernel_9", "kernel_11"]


def test_ends_at_the_official_models() -> None:
    assert load("resnet50_to_convnext_t")[-1].spec == base_spec("convnext_tiny")
    assert load("resnet200_to_convnext_b")[-1].spec == base_spec("convnext_base")
    assert load("resnet50_to_convnext_t")[0].spec == base_spec("resnet50")


@pytest.mark.parametrize("transform, spec_name, needs", [
    ("move_up_dwconv", "resnet50", "depthwise"),
    ("fewer_activations", "resnet50", "move_up_dwconv"),
    ("fewer_norms", "resnet50", "move_up_dwconv"),
    ("separate_downsampling", "resnet50", "inverted_bottleneck"),
])
def test_preconditions_name_the_missing_step(transform: str, spec_name: str, needs: str) -> None:
    with pytest.raises(PreconditionError, match=f"needs '{needs}' first"):
        get_transform(transform)(base_spec(spec_name))


def test_move_up_before_inverting_names_inverted_bottleneck() -> None:
    spec = get_transform("depthwise")(base_spec("resnet50"))
    with pytest.raises(PreconditionError, match="needs 'inverted_bottleneck' first"):
        get_transform("move_up_dwconv")(spec)


@pytest.mark.parametrize("name", ["depthwise", "gelu", "bn_to_ln", "patchify_stem"])
def test_no_op_is_refused(name: str) -> None:
    spec = get_transform(name)(base_spec("resnet50"))
    with pytest.raises(PreconditionError, match="changes nothing"):
        get_transform(name)(spec)


@pytest.mark.parametrize("k", [0, -1, 4, 8])
def test_kernel_size_must_be_positive_odd(k: int) -> None:
    with pytest.raises(SpecError, match="positive odd"):
        get_transform("kernel_size")(base_spec("resnet50"), kernel_size=k)


def test_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="no parameter 'kernel'.*kernel_size"):
        get_transform("kernel_size")(base_spec("resnet50"), kernel=7)
    with pytest.raises(ConfigError, match="expected int"):
        get_transform("kernel_size")(base_spec("resnet50"), kernel_size="7")
    with pytest.raises(ConfigError, match="unknown transform 'nope'"):
        get_transform("nope")


def test_widen_refuses_fractional_channels() -> None:
    with pytest.raises(PreconditionError, match="whole channels"):
        get_transform("widen")(modernize.ArchSpec(stem_width=48, dims=(100, 200, 400, 800)), width=64)


def test_user_transform_registers_and_applies() -> None:
    @register_transform("test_swap_act", label="swap activation")
    def swap(spec: modernize.ArchSpec, *, act: str = "gelu") -> modernize.ArchSpec:
        """Swap the activation."""
        return spec.replace(act=act)

    try:
        assert get_transform("test_swap_act")(base_spec("resnet50")).act == "gelu"
    finally:
        del TRANSFORMS["test_swap_act"]


def test_every_paper_step_has_its_phase_and_reason() -> None:
    """One source for the lesson's shape: each adopted step of both roadmaps after the recipe
    has the paper's phase and a one-line reason; the phases come in the paper's order."""
    from modernize.transforms import PHASES, TRAINING, phase_of, reason_of

    for name in ("resnet50_to_convnext_t", "resnet200_to_convnext_b"):
        roadmap = load(name)
        phases = [phase_of(s) for s in roadmap if s.transforms and s.adopted]
        assert all(p is not None for p in phases) and all(reason_of(s) for s in roadmap if s.transforms)
        order = [PHASES.index(p) for p in phases if p in PHASES]
        assert order == sorted(order) and set(order) == set(range(5))
        assert phase_of(roadmap[0]) is None and reason_of(roadmap[0]) == ""
    assert phase_of("kernel_size").name == "large kernel" and phase_of("layer_scale") is TRAINING
    assert phase_of("act") is None and phase_of("no_such_transform") is None
    assert "Swin" in reason_of("kernel_size") and len(reason_of("kernel_size")) < 120
