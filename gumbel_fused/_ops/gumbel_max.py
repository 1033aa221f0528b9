"""The ``gumbel_fused::gumbel_max`` op and its fake.

On the ``(outer, K, inner)`` view built by :func:`gumbel_fused.gumbel_max`, it draws over dim 1 and returns the
int64 ``(outer, inner)`` indices. ``seed`` (int64) and ``temperature`` (float64) are 0-dim tensors on the
logits' device, as for ``gumbel_softmax_fwd``: a new temperature never recompiles. Indices have no gradient, so
the op registers no autograd: it is a leaf of the graph whatever its input requires.
"""

from __future__ import annotations

import torch

from ..reference.gumbel_max import gumbel_max_ref
from ._dispatch import LIBRARY, define_op

gumbel_max = define_op(
    "gumbel_max(Tensor logits, Tensor seed, Tensor temperature) -> Tensor",
    gumbel_max_ref,
    cpp="gumbel_max",
    triton="gumbel_max.gumbel_max",
    temperature="temperature",
)


@torch.library.register_fake("gumbel_fused::gumbel_max", lib=LIBRARY)
def _(logits, seed, temperature):
    outer, _, inner = logits.shape
    return logits.new_empty((outer, inner), dtype=torch.int64)
