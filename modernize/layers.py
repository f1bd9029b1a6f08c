"""Modules of the built-in layer kinds that torch and torchvision do not ship (``modernize.kinds``
registers them; this module is imported when one is built)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GlobalResponseNorm(nn.Module):
    """ConvNeXt V2's global response normalization: each channel's spatial L2 norm, divided by
    the mean over channels, rescales the input; zero-initialized gamma and beta make it start
    as the identity."""

    def __init__(self, channels: int, *, channels_last: bool, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels_last, self.eps = channels_last, eps
        shape = (1, 1, 1, channels) if channels_last else (1, channels, 1, 1)
        self.gamma = nn.Parameter(torch.zeros(shape))
        self.beta = nn.Parameter(torch.zeros(shape))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.gamma)
        nn.init.zeros_(self.beta)

    def forward(self, x: Tensor) -> Tensor:
        space, chan = ((1, 2), -1) if self.channels_last else ((2, 3), 1)
        gx = torch.linalg.vector_norm(x, dim=space, keepdim=True)
        nx = gx / (gx.mean(dim=chan, keepdim=True) + self.eps)
        return self.gamma * (x * nx) + self.beta + x


__all__ = ["GlobalResponseNorm"]
