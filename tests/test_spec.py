"""The spec: typed, frozen, validated with messages that name the field."""

from __future__ import annotations

import dataclasses

import pytest

from modernize import ArchSpec, SpecError, base_spec


def test_frozen() -> None:
    spec = base_spec("resnet50")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.depths = (1, 1, 1, 1)  # type: ignore[misc]


def test_lists_become_tuples_and_hashable() -> None:
    spec = ArchSpec(depths=[2, 2, 2, 2])  # type: ignore[arg-type]
    assert spec.depths == (2, 2, 2, 2)
    assert hash(spec) == hash(ArchSpec(depths=(2, 2, 2, 2)))


def test_round_trip_dict() -> None:
    spec = base_spec("convnext_tiny")
    assert ArchSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("changes, field", [
    ({"kernel_size": 4}, "kernel_size"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"kernel_size": -3}, "kernel_size"),
    ({"depths": (3, 4, 6)}, "depths"),
    ({"act": "swish"}, "act"),
    ({"norm": "rms"}, "norm"),  # not registered
    ({"norm": "group", "norm_args": {"groups": 3}}, "norm_args"),
    ({"groups": 0}, "groups"),
    ({"groups": 3}, "groups"),
    ({"drop_path": 1.5}, "drop_path"),
    ({"stem_width": "64"}, "stem_width"),
    ({"acts": "one"}, "acts"),
    ({"norms": "one"}, "norms"),
    ({"downsample": "separate"}, "downsample"),
    ({"expansion": True}, "expansion"),
    ({"layer_scale": float("inf")}, "layer_scale"),  # trained to a NaN loss, recorded as failed
    ({"layer_scale": float("nan")}, "layer_scale"),
    ({"layer_scale": -1e-6}, "layer_scale"),
    ({"init_std": float("inf")}, "init_std"),
    ({"drop_path": float("nan")}, "drop_path"),
])
def test_invalid_values_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(SpecError, match=field):
        base_spec("resnet50").replace(**changes)


def test_unknown_field() -> None:
    with pytest.raises(SpecError, match="unknown spec field"):
        base_spec("resnet50").replace(kernel=7)
    with pytest.raises(SpecError, match="unknown base spec"):
        base_spec("resnet999")


def test_derived_widths() -> None:
    r50 = base_spec("resnet50")
    assert r50.hidden_dims == (64, 128, 256, 512)
    assert r50.stem_total_stride == 4
    cnx = base_spec("convnext_tiny")
    assert cnx.hidden_dims == (384, 768, 1536, 3072)
    assert cnx.stem_total_stride == 4


def test_diff() -> None:
    a, b = base_spec("resnet50"), base_spec("resnet50").replace(act="gelu")
    assert a.diff(b) == {"act": ("relu", "gelu")}
