"""torch.fx, torchvision's feature extractor and torch.export on every step's model, as
torchvision tests its own models: the traced graph gives the eager model's outputs bit for bit,
module names and state-dict keys stay those of the eager model."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from modernize import build_model, load_roadmap
from modernize.fx import feature_extractor, leaf_module_types, symbolic_trace
from modernize.kinds import REGISTRIES, register_component
from modernize.proxy import CPU_PROXY

ROADMAP = load_roadmap("resnet50_to_convnext_t")
STEPS = ROADMAP.names


def randomized(spec: object) -> nn.Module:
    """A small model with random weights and BatchNorm statistics (at init BN is the identity
    and layer scale 1e-6, which would hide a wrong wiring)."""
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) * 0.5 + 0.5 if t.dim() == 1 else torch.randn_like(t) * 0.2)
    return model.eval()


def test_every_step_of_the_main_roadmap_is_covered() -> None:
    assert len(STEPS) == 17


@pytest.mark.parametrize("name", STEPS)
def test_paper_scale_model_traces_with_stage_nodes(name: str) -> None:
    model = build_model(ROADMAP[name].spec, device="meta")
    graph = torch.fx.symbolic_trace(model)
    assert [n for n, _ in graph.named_modules() if n.startswith("stages.1.blocks.0.conv")] == \
        [n for n, _ in model.named_modules() if n.startswith("stages.1.blocks.0.conv")]
    _, eval_nodes = get_graph_node_names(model)
    assert any(n.startswith("stages.1.blocks.") for n in eval_nodes) and "head.fc" in eval_nodes


@pytest.mark.parametrize("name", STEPS)
def test_traced_and_extracted_outputs_equal_eager(name: str) -> None:
    model = randomized(CPU_PROXY.apply(ROADMAP[name].spec))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = model(x)
        stage1 = model.stages[:2](model.stem(x))
        traced = torch.fx.symbolic_trace(model)
        assert torch.equal(traced(x), eager)
        assert traced.state_dict().keys() == model.state_dict().keys()
        extractor = create_feature_extractor(model, return_nodes=["stages.1", "head.fc"])
        out = extractor(x)
    assert torch.equal(out["stages.1"], stage1) and torch.equal(out["head.fc"], eager)


@pytest.mark.parametrize("name", [STEPS[0], STEPS[-1]])
def test_export_first_and_last_step(name: str) -> None:
    model = randomized(CPU_PROXY.apply(ROADMAP[name].spec))
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(exported.module()(x), model(x), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", STEPS[1:-1])
def test_export_every_other_step(name: str) -> None:
    test_export_first_and_last_step(name)


def test_builtin_kinds_trace() -> None:
    spec = CPU_PROXY.apply(ROADMAP[-1].spec).replace(act="silu", components=("se", "grn", "se@after_spatial"))
    model = randomized(spec)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(torch.fx.symbolic_trace(model)(x), model(x))
    assert leaf_module_types(model) == []


class _Untraceable(nn.Module):
    """Python control flow on a tensor value: torch.fx cannot trace through it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x


def test_untraceable_user_kind_is_kept_as_a_leaf() -> None:
    register_component("test_untraceable", label="test", leaf=True)(lambda channels, *, layout: _Untraceable())
    try:
        model = randomized(CPU_PROXY.apply(ROADMAP[0].spec).replace(components=("test_untraceable",)))
        with pytest.raises(torch.fx.proxy.TraceError):
            torch.fx.symbolic_trace(model)
        assert leaf_module_types(model) == [_Untraceable]
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(symbolic_trace(model)(x), model(x))
            assert torch.equal(feature_extractor(model, ["head.fc"])(x)["head.fc"], model(x))
        graph = symbolic_trace(model).graph
        assert any(n.op == "call_module" and n.target.endswith("test_untraceable_end") for n in graph.nodes)
    finally:
        del REGISTRIES["component"]["test_untraceable"]


@pytest.mark.parametrize("name", STEPS)
def test_block_branch_is_the_order_forward_runs(name: str) -> None:
    """``Block.branch()`` (what describe and the diagrams show) lists the modules in the order
    the traced forward calls them: the drawings cannot disagree with the computation."""
    model = build_model(ROADMAP[name].spec, device="meta")
    graph = torch.fx.symbolic_trace(model).graph
    called = [n.target for n in graph.nodes if n.op == "call_module"]
    for prefix in ("stages.1.blocks.0.", "stages.0.blocks.1."):
        block = model.get_submodule(prefix.rstrip("."))
        branch = [prefix + n for n, _ in block.branch()]
        assert [t for t in called if t in branch] == branch
