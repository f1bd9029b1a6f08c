"""A user transform for docs/examples/user_roadmap.toml: registered on import by the roadmap's
``imports``, then used by name like a built-in."""

from modernize.errors import PreconditionError
from modernize.spec import ArchSpec
from modernize.transforms import register_transform


@register_transform("mlp_ratio", label="MLP ratio")
def mlp_ratio(spec: ArchSpec, ratio: int = 3) -> ArchSpec:
    """Hidden width of the inverted bottleneck: ``ratio`` x the block width (ConvNeXt uses 4)."""
    if spec.block != "inverted":
        raise PreconditionError("'mlp_ratio' needs an inverted bottleneck ('inverted_bottleneck' first)")
    return spec.replace(expansion=ratio)
