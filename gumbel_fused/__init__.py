"""gumbel-fused: a fused, reproducible Gumbel-softmax for PyTorch."""

from .functional import draw_seed, gumbel_softmax
from .modules import GumbelSoftmax

__all__ = ["gumbel_softmax", "draw_seed", "GumbelSoftmax"]
__version__ = "0.1.0"
