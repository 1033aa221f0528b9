"""The public functions, as ``gumbel_fused.functional`` (mirroring ``torch.nn.functional``)."""

from ._api._args import draw_seed
from ._api.gumbel_softmax import gumbel_softmax

__all__ = ["draw_seed", "gumbel_softmax"]
