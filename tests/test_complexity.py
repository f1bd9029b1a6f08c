"""Counting follows the paper's convention; cross-checked with torch's own FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modernize import base_spec, build_model, count

from .conftest import ROOT, SHARED_REFERENCE


@pytest.mark.parametrize("name", ["resnet50", "convnext_tiny"])
def test_macs_equal_half_of_torch_flop_counter(name: str) -> None:
    model = build_model(base_spec(name)).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert count(model).macs * 2 == counter.get_total_flops()


def test_known_totals() -> None:
    r50 = count(base_spec("resnet50"))
    assert (r50.macs, r50.params) == (4_089_184_256, 25_557_032)
    assert round(r50.gflops_fvcore, 2) == 4.11  # fvcore's default adds norms and pooling
    cnx = count(base_spec("convnext_tiny"))
    assert (round(cnx.gmacs, 4), cnx.params) == (4.4555, 28_589_128)
    assert round(cnx.gflops_fvcore, 2) == 4.47


def test_resolution_and_training_mode_kept() -> None:
    model = build_model(base_spec("resnet50")).train()
    c = count(model, resolution=112)
    assert model.training
    assert c.macs < count(base_spec("resnet50")).macs / 3


def test_paper_csv_copies_match_shared_reference() -> None:
    """ablations/paper/ holds copies of the reference numbers; they must not drift."""
    if not SHARED_REFERENCE.is_dir():  # the reference lies beside this project's checkout, not in the repository
        pytest.skip(f"reference folder {SHARED_REFERENCE} absent (outside the repository)")
    for name in ("paper_roadmap_r50.csv", "paper_roadmap_r200.csv"):
        assert (ROOT / "ablations" / "paper" / name).read_text() == (SHARED_REFERENCE / name).read_text()
