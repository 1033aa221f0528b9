"""The public functions, as ``gumbel_fused.functional`` (mirroring ``torch.nn.functional``)."""

from ._api._args import draw_seed
from ._api.gumbel_max import gumbel_max
from ._api.gumbel_softmax import gumbel_softmax
from ._api.gumbel_topk import gumbel_topk

__all__ = ["draw_seed", "gumbel_max", "gumbel_softmax", "gumbel_topk"]
