"""Complexity as the paper counts it: multiply-accumulates of conv and linear layers.

fvcore counts one fused multiply-add as one FLOP. Its default handles also count norms
and pooling; the paper does not (ResNet-50: 4.11 G with them, 4.09 G without). One
fvcore trace gives both figures: ``macs`` keeps only the conv/linear operators (the
same as turning the norm/pool handles off), ``flops_fvcore`` is fvcore's default total.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from .model import build_model
from .spec import ArchSpec

_MAC_OPS = {"conv", "linear", "matmul", "addmm", "bmm", "einsum"}


@dataclass(frozen=True)
class Complexity:
    macs: int
    """Conv + linear multiply-accumulates, batch 1 (the paper's "FLOPs")."""
    flops_fvcore: int
    """fvcore's default count (norms and pooling included)."""
    params: int
    resolution: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops_fvcore(self) -> float:
        return self.flops_fvcore / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6


def count(spec_or_model: ArchSpec | nn.Module, resolution: int = 224) -> Complexity:
    """Count MACs, fvcore FLOPs and parameters of a spec (or a built model) at ``resolution``."""
    model = build_model(spec_or_model) if isinstance(spec_or_model, ArchSpec) else spec_or_model
    spec = getattr(model, "spec", None)
    in_chans = spec.in_chans if spec is not None else _in_chans(model)
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, resolution, resolution)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad():
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_op = analysis.by_operator()
    model.train(was_training)
    macs = sum(v for k, v in by_op.items() if k in _MAC_OPS)
    return Complexity(macs=int(macs), flops_fvcore=int(sum(by_op.values())),
                      params=sum(p.numel() for p in model.parameters()), resolution=resolution)


def _in_chans(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3
