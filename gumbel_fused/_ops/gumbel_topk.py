"""The ``gumbel_fused::gumbel_topk`` op and its fake.

On the ``(outer, K, inner)`` view built by :func:`gumbel_fused.gumbel_topk`, it draws k categories without
replacement over dim 1 and returns the int64 ``(outer, k, inner)`` indices in draw order. ``seed`` and
``temperature`` are 0-dim tensors, as for ``gumbel_max``; ``k`` is an int (it fixes the output's shape). No
autograd: the output is indices.
"""

from __future__ import annotations

import torch

from ..reference.gumbel_topk import gumbel_topk_ref
from ._dispatch import LIBRARY, define_op

gumbel_topk = define_op(
    "gumbel_topk(Tensor logits, Tensor seed, Tensor temperature, int k) -> Tensor",
    gumbel_topk_ref,
    cpp="gumbel_topk",
    triton="gumbel_topk.gumbel_topk",
    temperature="temperature",
)


@torch.library.register_fake("gumbel_fused::gumbel_topk", lib=LIBRARY)
def _(logits, seed, temperature, k):
    outer, _, inner = logits.shape
    return logits.new_empty((outer, k, inner), dtype=torch.int64)
