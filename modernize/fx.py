"""``torch.fx`` for the built models: a symbolic trace and torchvision's feature extractor.

Every model with the built-in kinds traces as it is (``torch.fx.symbolic_trace(model)`` and
``create_feature_extractor(model, return_nodes=["stages.1"])`` work, as for torchvision's
resnet50 and convnext_tiny). A user kind whose forward cannot be traced (Python control flow on
tensor values, data-dependent shapes) is registered ``leaf=True`` and these helpers keep its
modules as single nodes; with torchvision's function directly, pass
``tracer_kwargs={"leaf_modules": leaf_module_types(model)}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.fx
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from .kinds import kind_of


def leaf_module_types(model: nn.Module) -> list[type[nn.Module]]:
    """The classes of the model's modules whose kind was registered ``leaf=True``."""
    return sorted({type(m) for m in model.modules() if is_leaf_kind(m)}, key=str)


def is_leaf_kind(m: nn.Module) -> bool:
    """Built by a kind registered ``leaf=True`` (its forward cannot be traced)."""
    kind = kind_of(m)
    return kind is not None and kind.leaf


class LeafTracer(torch.fx.Tracer):
    """``torch.fx.Tracer`` that keeps the modules of ``leaf=True`` kinds as call_module nodes."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_leaf_kind(m) or super().is_leaf_module(m, module_qualified_name)


def symbolic_trace(model: nn.Module) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace`` that keeps untraceable user kinds as leaves."""
    graph = LeafTracer().trace(model)
    return torch.fx.GraphModule(model, graph, type(model).__name__)


def feature_extractor(model: nn.Module, return_nodes: Sequence[str] | dict[str, str],
                      **kwargs: Any) -> torch.fx.GraphModule:
    """torchvision's ``create_feature_extractor`` with the model's leaf kinds passed on:
    ``feature_extractor(model, ["stages.1", "stages.3"])(x)`` gives those stages' outputs."""
    tracer_kwargs = dict(kwargs.pop("tracer_kwargs", None) or {})
    tracer_kwargs["leaf_modules"] = [*tracer_kwargs.get("leaf_modules", []), *leaf_module_types(model)]
    nodes = list(return_nodes) if not isinstance(return_nodes, dict) else return_nodes
    return create_feature_extractor(model, return_nodes=nodes, tracer_kwargs=tracer_kwargs, **kwargs)


__all__ = ["LeafTracer", "feature_extractor", "is_leaf_kind", "leaf_module_types", "symbolic_trace"]
