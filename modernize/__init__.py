"""modernize: ResNet-50 -> ConvNeXt, one measured change at a time."""

import warnings as _warnings

# torchvision/fvcore touch torch.jit.script at import; the deprecation is theirs, not ours.
_warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from .complexity import Complexity, count
from .errors import ConfigError, ModernizeError, PreconditionError, SpecError
from .interop import from_torchvision, to_torchvision
from .model import ModernNet, build_model
from .roadmap import Roadmap, Step, load_roadmap
from .spec import BASE_SPECS, ArchSpec, base_spec
from .transforms import TRANSFORMS, Transform, get_transform, register_transform

__all__ = [
    "ArchSpec", "BASE_SPECS", "Complexity", "ConfigError", "ModernNet", "ModernizeError",
    "PreconditionError", "Roadmap", "SpecError", "Step", "TRANSFORMS", "Transform",
    "base_spec", "build_model", "count", "from_torchvision", "get_transform", "load_roadmap", "register_transform",
    "to_torchvision",
]
__version__ = "0.1.0"
