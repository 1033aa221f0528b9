"""gumbel-fused: fused, reproducible Gumbel sampling for PyTorch."""

from .functional import draw_seed, gumbel_max, gumbel_softmax, gumbel_topk
from .modules import GumbelSoftmax

__all__ = ["GumbelSoftmax", "draw_seed", "gumbel_max", "gumbel_softmax", "gumbel_topk"]
__version__ = "0.2.0"
