"""The optimizer (with its weight-decay groups) and the per-iteration learning-rate schedule."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..recipe import Recipe


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool) -> list[dict[str, Any]]:
    """Weight decay on weights only: parameters with ndim <= 1 (norm scales/shifts, biases,
    layer-scale gammas) go to a group without it, as in the ConvNeXt / DeiT recipes."""
    if decay_all:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe.weight_decay, recipe.decay_norm_and_bias)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=recipe.betas)
    return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=recipe.nesterov)


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe,
                   iters_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per iteration: linear warm-up, then cosine to ``min_lr`` (or step decay
    at ``decay_epochs``, or constant)."""
    from torch.optim import lr_scheduler as S

    total = recipe.epochs * iters_per_epoch
    warm = min(int(round(recipe.warmup_epochs * iters_per_epoch)), total)
    rest = max(1, total - warm)
    if recipe.schedule == "cosine":
        main: S.LRScheduler = S.CosineAnnealingLR(opt, T_max=rest, eta_min=recipe.min_lr)
    elif recipe.schedule == "step":
        milestones = [int(round(e * iters_per_epoch)) - warm for e in recipe.decay_epochs]
        main = S.MultiStepLR(opt, milestones=[m for m in milestones if m > 0], gamma=recipe.decay_factor)
    else:
        main = S.ConstantLR(opt, factor=1.0, total_iters=0)
    if warm == 0:
        return main
    warmup = S.LinearLR(opt, start_factor=recipe.warmup_start_factor, end_factor=1.0, total_iters=warm)
    return S.SequentialLR(opt, [warmup, main], milestones=[warm])
