"""``gumbel_softmax``: a drop-in for ``torch.nn.functional.gumbel_softmax``, fused into one kernel a direction."""

from __future__ import annotations

import warnings

import torch

from .._ops import gumbel_softmax as ops
from ._args import (
    canonical_dim,
    categories_view,
    check_generator,
    check_logits,
    check_temperature,
    draw_seed,
    temperature_tensor,
)


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    hard: bool = False,
    eps: float = 1e-10,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample from the Gumbel-softmax (Concrete) distribution, fused into one kernel per direction.

    Same signature and semantics as :func:`torch.nn.functional.gumbel_softmax`
    (Jang et al. 2017, arXiv:1611.01144; Maddison et al. 2017, arXiv:1611.00712):
    ``y = softmax((logits + g) / tau, dim)`` with ``g ~ Gumbel(0, 1)``.

    Args:
        logits: unnormalized log-probabilities, any shape, fp16/bf16/fp32/fp64. ``-inf`` marks an
            impossible category: it gets exactly 0 and is never drawn. A slice along ``dim`` with no
            finite logit, or holding a NaN, gives NaN for that slice only (as ``torch.softmax``).
        tau: positive temperature.
        hard: if True, return an exact one-hot (0.0 and 1.0) of the sample's argmax, whose gradient
            is that of the soft sample (straight-through).
        eps: deprecated and ignored, as in torch.
        dim: the dimension holding the categories.
        generator: the ``torch.Generator`` to draw the seed from; defaults to the logits' device's.

    Returns:
        A tensor with the shape, dtype and device of ``logits``.
    """
    check_logits("gumbel_softmax", logits)
    check_temperature("gumbel_softmax", "tau", tau)
    check_generator("gumbel_softmax", generator)
    if eps != 1e-10:
        warnings.warn("`eps` parameter is deprecated and has no effect.", stacklevel=2)
    if logits.dim() == 0:
        # torch treats a scalar as one category; keep the drop-in behaviour.
        return gumbel_softmax(logits.view(1), tau, hard, dim=dim, generator=generator).view(())
    dim = canonical_dim(dim, logits.dim())
    if logits.numel() == 0:
        return torch.empty_like(logits)
    seed = draw_seed(logits.device, generator)
    tau = temperature_tensor(tau, logits.device)
    return ops.gumbel_softmax_fwd(categories_view(logits, dim), seed, tau, bool(hard)).view(logits.shape)
