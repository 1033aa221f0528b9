"""gumbel-fused: a fused, reproducible Gumbel-softmax for PyTorch."""

from .functional import draw_seed, gumbel_softmax

__all__ = ["gumbel_softmax", "draw_seed"]
__version__ = "0.1.0"
