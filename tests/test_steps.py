"""Every step of both roadmaps: pinned complexity, forward at 224 and 32 px, backward."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modernize import base_spec, build_model
from modernize.proxy import CPU_PROXY

from .conftest import GOLDEN, all_steps, load

STEPS = all_steps()


@pytest.mark.parametrize("roadmap, step", STEPS)
def test_step_counts_runs_and_trains(roadmap: str, step: str) -> None:
    """One build per step (they are big): golden complexity, forward at 224 and 32 px, and
    backward reaching every parameter."""
    rm = load(roadmap)
    model = build_model(rm[step].spec).eval()
    row, golden = rm[step].paper, GOLDEN[roadmap][step]
    # forward at 224 px, counting MACs on the way (torch counts 2 FLOPs per MAC); the
    # fvcore figures are checked for every step by test_flops_cli, one trace per step
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        y = model(torch.randn(1, 3, 224, 224))
    assert y.shape == (1, 1000) and torch.isfinite(y).all()
    macs = counter.get_total_flops() // 2
    params = sum(p.numel() for p in model.parameters())
    assert (macs, params) == (golden["macs"], golden["params"])
    assert abs(macs / 1e9 - float(row["analytic_gmacs"])) <= 0.0005
    if "inconsisten" not in row["note"]:
        assert f"{macs / 1e9:.2f}" == f"{float(row['paper_gflops']):.2f}"
    assert abs(params / 1e6 - float(row["analytic_params_m"])) <= 0.01
    with torch.no_grad():
        y = model(torch.randn(1, 3, 32, 32))
        assert y.shape == (1, 1000) and torch.isfinite(y).all()
    # backward at 32 px (BN in training mode)
    model.train()
    y = model(torch.randn(2, 3, 32, 32))
    torch.nn.functional.cross_entropy(y, torch.tensor([1, 2])).backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert not missing, missing


def test_official_module_names() -> None:
    names = dict(build_model(base_spec("convnext_tiny")).named_modules())
    for name in ("stem.conv", "stem.norm", "stages.1.downsample.norm", "stages.1.downsample.conv",
                 "stages.0.blocks.0.conv_dw", "stages.0.blocks.0.norm_dw", "stages.0.blocks.0.conv_pw1",
                 "stages.0.blocks.0.act_pw1", "stages.0.blocks.0.conv_pw2", "head.norm", "head.fc"):
        assert name in names, name
    r50 = dict(build_model(base_spec("resnet50")).named_modules())
    for name in ("stem.pool", "stages.0.blocks.0.conv_pw1", "stages.0.blocks.0.conv_kxk",
                 "stages.1.blocks.0.shortcut.conv", "stages.0.blocks.0.norm_pw2", "stages.0.blocks.0.act_out"):
        assert name in r50, name


def test_stride_and_shapes_follow_v1_5() -> None:
    model = build_model(base_spec("resnet50"))
    block = model.stages[1].blocks[0]
    assert block.conv_kxk.stride == (2, 2) and block.conv_pw1.stride == (1, 1)
    assert block.shortcut.conv.stride == (2, 2)
    feats = model.forward_features(torch.randn(1, 3, 224, 224))
    assert feats.shape == (1, 2048, 7, 7)


@pytest.mark.parametrize("name", ["resnet50", "convnext_tiny"])
def test_overrides_and_any_input(name: str) -> None:
    model = build_model(base_spec(name), num_classes=7, in_chans=1, drop_path=0.1)
    y = model(torch.randn(3, 1, 48, 64))
    assert y.shape == (3, 7)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_layer_scale_and_drop_path_built() -> None:
    model = build_model(base_spec("convnext_tiny"), drop_path=0.2)
    blocks = [b for s in model.stages for b in s.blocks]
    assert torch.allclose(blocks[0].gamma, torch.full((96,), 1e-6))
    assert blocks[0].drop_path.__class__.__name__ == "Identity"  # rate 0 at the first block
    assert blocks[-1].drop_path.p == pytest.approx(0.2)


# --- the block's wiring pinned: state-dict keys and outputs of every step ------------------------

PINS = Path(__file__).parent / "golden" / "block_pins.json"


def _pin(roadmap: str, step: str) -> dict[str, object]:
    """Digest of the paper-scale state-dict keys and shapes (meta device: no memory), and the
    logits of the CPU-proxy model with every parameter and buffer randomized (at init, layer
    scale 1e-6 and BatchNorm's identity would hide a wrong wiring)."""
    spec = load(roadmap)[step].spec
    keys = [f"{k}:{tuple(v.shape)}" for k, v in build_model(spec, device="meta").state_dict().items()]
    torch.manual_seed(0)
    model = build_model(CPU_PROXY.apply(spec), num_classes=10).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + 0.9 if t.dim() == 1
                        else torch.randn(t.shape, generator=g) * 0.1)
        y = model(torch.randn(2, 3, 32, 32, generator=g))
    return {"keys": hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16], "n_keys": len(keys),
            "logits": [round(v, 5) for v in y.flatten().tolist()]}


@pytest.mark.parametrize("roadmap, step", STEPS)
def test_block_wiring_is_pinned(roadmap: str, step: str) -> None:
    """State-dict keys and randomized-parameter outputs of every step equal the pinned ones
    (tests/golden/block_pins.json, written by ``MODERNIZE_WRITE_PINS=1 pytest -k pinned``):
    a refactor of the block that reorders, renames or rewires a layer fails here."""
    got = _pin(roadmap, step)
    pins = json.loads(PINS.read_text()) if PINS.exists() else {}
    if os.environ.get("MODERNIZE_WRITE_PINS"):
        pins.setdefault(roadmap, {})[step] = got
        PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    want = pins[roadmap][step]
    assert (got["keys"], got["n_keys"]) == (want["keys"], want["n_keys"])
    assert got["logits"] == pytest.approx(want["logits"], rel=1e-4, abs=1e-4)
