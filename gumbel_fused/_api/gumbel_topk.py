"""``gumbel_topk``: k categorical draws without replacement per slice, in draw order, fused."""

from __future__ import annotations

import torch

from .._ops import gumbel_topk as ops
from .._ops.seed import seed_for
from ._args import (
    canonical_dim,
    categories_view,
    check_generator,
    check_logits,
    check_num_draws,
    checked_temperature,
)


def gumbel_topk(
    logits: torch.Tensor,
    k: int,
    dim: int = -1,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw k categories without replacement from ``softmax(logits / temperature, dim)``, in draw order.

    The indices of the k largest ``logits / temperature + g`` along ``dim``, largest first (computed shifted
    by the slice's max, as :func:`gumbel_max`; the Gumbel-top-k trick: Kool, van Hoof, Welling, ICML 2019,
    arXiv:1903.06059): slot 0 is a draw from the softmax, slot 1 a draw from the rest renormalized, and so on
    (Plackett-Luce). The noise is :func:`gumbel_max`'s, so slot 0
    is ``gumbel_max(logits, dim)`` for the same RNG state. One pass over the logits, a partial selection per
    slice rather than a sort; not differentiable.

    Args:
        logits: unnormalized log-probabilities, any shape, fp16/bf16/fp32/fp64. ``-inf`` marks a category that
            is never drawn.
        k: the number of draws, ``0 <= k <= logits.shape[dim]``.
        dim: the dimension holding the categories.
        temperature: positive; below 1 sharpens the distribution, above 1 flattens it.
        generator: the ``torch.Generator`` to draw the seed from; defaults to the logits' device's.

    Returns:
        int64 indices of the shape of ``logits`` with ``dim`` of size k, on the logits' device. A slot past the
        slice's drawable categories (fewer than k finite logits) holds -1, and so does every slot of a slice
        with nothing to draw from (every logit -inf, or a NaN or +inf among them), as in :func:`gumbel_max`.
    """
    check_logits("gumbel_topk", logits)
    temperature = checked_temperature("gumbel_topk", "temperature", temperature, logits)
    check_generator("gumbel_topk", generator)
    if logits.dim() == 0:  # one category, as torch.topk treats a scalar
        draws = gumbel_topk(logits.view(1), k, dim, temperature=temperature, generator=generator)
        return draws.view(()) if k == 1 else draws
    dim = canonical_dim("gumbel_topk", dim, logits.dim())
    check_num_draws("gumbel_topk", k, logits.shape[dim], dim)
    out_shape = logits.shape[:dim] + (k,) + logits.shape[dim + 1 :]
    if logits.numel() == 0 or k == 0:
        return torch.empty(out_shape, dtype=torch.int64, device=logits.device)
    seed = seed_for(logits, generator)
    return ops.gumbel_topk(categories_view(logits, dim), seed, temperature, k).view(out_shape)
