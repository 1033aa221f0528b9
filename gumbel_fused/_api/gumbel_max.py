"""``gumbel_max``: one categorical draw per slice, fused: the indices, with no softmax, noise or one-hot in memory."""

from __future__ import annotations

import torch

from .._ops import gumbel_max as ops
from .._ops.seed import seed_for
from ._args import (
    canonical_dim,
    categories_view,
    check_categories,
    check_generator,
    check_logits,
    checked_temperature,
)


def gumbel_max(
    logits: torch.Tensor, dim: int = -1, *, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw one category from ``softmax(logits / temperature, dim)``, by the Gumbel-max trick.

    The index of ``argmax(logits / temperature + g)`` along ``dim``, with g ~ Gumbel(0, 1) from the project's
    RNG contract (docs/DESIGN.md section 3), computed as ``(logits - m) / temperature + g`` with m the slice's
    max (the same order; the shift keeps g at large |logits|, where 1e8 + g == 1e8 in fp32): the same noise,
    element for element, as :func:`gumbel_softmax` and :func:`gumbel_topk` draw from the same RNG state. So at
    temperature 1, ``gumbel_max(x, dim) == gumbel_softmax(x, hard=True, dim=dim).argmax(dim)`` and
    ``gumbel_max(x, dim) == gumbel_topk(x, k, dim).select(dim, 0)``, seed for seed. One pass over the logits,
    like ``torch.multinomial(softmax(logits), 1)`` but without the softmax; not differentiable.

    Args:
        logits: unnormalized log-probabilities, any shape, fp16/bf16/fp32/fp64. ``-inf`` marks a category that
            is never drawn.
        dim: the dimension holding the categories; it must not be empty.
        temperature: positive; below 1 sharpens the distribution, above 1 flattens it.
        generator: the ``torch.Generator`` to draw the seed from; defaults to the logits' device's.

    Returns:
        int64 indices of the shape of ``logits`` without ``dim``, on the logits' device. A slice with nothing
        to draw from (every logit -inf, or a NaN or +inf among them, where ``softmax`` and ``gumbel_softmax``
        give NaN) gets -1: an index that fails loudly if used, found with ``(indices < 0)`` and no host sync.
    """
    check_logits("gumbel_max", logits)
    temperature = checked_temperature("gumbel_max", "temperature", temperature, logits)
    check_generator("gumbel_max", generator)
    if logits.dim() == 0:  # one category, as torch.argmax treats a scalar
        return gumbel_max(logits.view(1), dim, temperature=temperature, generator=generator).view(())
    dim = canonical_dim("gumbel_max", dim, logits.dim())
    check_categories("gumbel_max", logits, dim)
    out_shape = logits.shape[:dim] + logits.shape[dim + 1 :]
    if logits.numel() == 0:
        return torch.empty(out_shape, dtype=torch.int64, device=logits.device)
    seed = seed_for(logits, generator)
    return ops.gumbel_max(categories_view(logits, dim), seed, temperature).view(out_shape)
