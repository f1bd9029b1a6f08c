"""modernize: ResNet-50 -> ConvNeXt, one measured change at a time.

The public names below are imported on first use (PEP 562), so that ``import modernize.cli``
(``--help``, argument errors) does not pay for torch, torchvision and fvcore.
"""

from __future__ import annotations

import importlib
import warnings as _warnings
from typing import TYPE_CHECKING, Any

# torchvision/fvcore touch torch.jit.script at import; the deprecation is theirs, not ours.
_warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

_EXPORTS: dict[str, str] = {
    "Complexity": "complexity", "count": "complexity",
    "ConfigError": "errors", "ModernizeError": "errors", "PreconditionError": "errors", "SpecError": "errors",
    "from_torchvision": "interop", "to_torchvision": "interop",
    "ModernNet": "model", "build_model": "model",
    "Roadmap": "roadmap", "Step": "roadmap", "load_roadmap": "roadmap",
    "BASE_SPECS": "spec", "ArchSpec": "spec", "base_spec": "spec",
    "TRANSFORMS": "transforms", "Transform": "transforms", "get_transform": "transforms",
    "register_transform": "transforms",
}

__all__ = [
    "ArchSpec", "BASE_SPECS", "Complexity", "ConfigError", "ModernNet", "ModernizeError",
    "PreconditionError", "Roadmap", "SpecError", "Step", "TRANSFORMS", "Transform",
    "base_spec", "build_model", "count", "from_torchvision", "get_transform", "load_roadmap",
    "register_transform", "to_torchvision",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modernize' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .complexity import Complexity, count
    from .errors import ConfigError, ModernizeError, PreconditionError, SpecError
    from .interop import from_torchvision, to_torchvision
    from .model import ModernNet, build_model
    from .roadmap import Roadmap, Step, load_roadmap
    from .spec import BASE_SPECS, ArchSpec, base_spec
    from .transforms import TRANSFORMS, Transform, get_transform, register_transform
