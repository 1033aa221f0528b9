"""Reference ``gumbel_max`` on the op layout ``(outer, K, inner)``: one draw from softmax(logits / T) over K.

Gumbel-max trick: with g ~ Gumbel(0, 1) independent, argmax(logits / T + g) ~ Categorical(softmax(logits / T)).
The noise is the RNG contract's (``rng``), element for element the one ``gumbel_softmax`` draws, so that at
T = 1 the draw is ``gumbel_softmax(hard=True)``'s argmax for the same seed.
"""

from __future__ import annotations

import torch

from .rng import gumbel_from_uniform_ref, math_dtype, uniform_ref

# The index of a draw that does not exist: a row with no drawable category, or a top-k slot past the last one.
NO_DRAW = -1


def sampling_scores_ref(logits: torch.Tensor, seed: torch.Tensor | int, temperature: torch.Tensor | float) -> torch.Tensor:
    """``z = logits / T + g`` for ``(outer, K, inner)`` logits, in the math dtype.

    A division by T, not a multiply by 1 / T, so that every backend rounds z the same way, and so that at T = 1
    z is exactly ``gumbel_softmax``'s ``(logits + g) / 1``.
    """
    outer, n_cols, inner = logits.shape
    mdt = math_dtype(logits.dtype)
    g = gumbel_from_uniform_ref(uniform_ref(seed, outer, n_cols, inner, logits.device), mdt)
    return logits.to(mdt) / torch.as_tensor(temperature, dtype=mdt, device=logits.device) + g


def undefined_rows(z: torch.Tensor) -> torch.Tensor:
    """Rows (over dim 1) with nothing to draw from: no finite max (all -inf, or a +inf) or a NaN anywhere,
    exactly where ``softmax(z)`` is NaN and ``gumbel_softmax`` returns NaN."""
    row_max = z.amax(dim=1)
    return ~torch.isfinite(row_max) | torch.isnan(z).any(dim=1)


def gumbel_max_ref(logits: torch.Tensor, seed: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """The drawn category of each row of ``(outer, K, inner)`` logits: int64 ``(outer, inner)``, ``NO_DRAW`` for
    an undefined row. Ties (measure zero) go to the first index, as ``torch.argmax``."""
    z = sampling_scores_ref(logits, seed, temperature)
    return torch.where(undefined_rows(z), NO_DRAW, z.argmax(dim=1))
