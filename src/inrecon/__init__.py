"""inrecon: physics-informed implicit neural representations for MRI and CT reconstruction."""

from inrecon.runtime import tune_allocator as _tune_allocator

__version__ = "0.1.0"

_tune_allocator()

__all__ = ["__version__"]
