"""gumbel-fused: fused, reproducible Gumbel sampling for PyTorch."""

from .functional import draw_seed, gumbel_softmax
from .modules import GumbelSoftmax

__all__ = ["GumbelSoftmax", "draw_seed", "gumbel_softmax"]
__version__ = "0.2.0"
