"""Where a model runs and at which precision, decided once for every command.

`train`, `train --plan` and `bench` all take ``--device`` and a precision; one resolver and
one precision table keep them from drifting apart (a device string `bench` accepts and
`train` refuses, or autocast on in the loop and off in the estimate)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .errors import ConfigError

AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
"""A recipe's ``precision`` -> the CUDA autocast dtype (None: fp32). CPU runs always use fp32:
CPU autocast would make results depend on the CPU's bf16 support."""


def resolve_device(device: str | None) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (``auto``/None: CUDA where there is one); asking for
    CUDA where there is none is a user error, not a silent fall-back."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device '{device}': expected cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine "
                          f"(torch {torch.__version__}); use --device cpu")
    return device


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a forward pass at ``precision`` on ``device``."""
    dtype = AUTOCAST_DTYPES[precision]
    if device.startswith("cuda") and dtype is not None:
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def precision_label(device: str, precision: str) -> str:
    """What actually runs: ``bf16-autocast`` / ``fp16-autocast`` on CUDA, else ``fp32``."""
    return f"{precision}-autocast" if device.startswith("cuda") and AUTOCAST_DTYPES[precision] else "fp32"


__all__ = ["AUTOCAST_DTYPES", "autocast", "precision_label", "resolve_device"]
