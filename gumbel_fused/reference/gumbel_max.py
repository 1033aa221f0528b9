"""Reference ``gumbel_max`` on the op layout ``(outer, K, inner)``: one draw from softmax(logits / T) over K.

Gumbel-max trick: with g ~ Gumbel(0, 1) independent, argmax(logits / T + g) ~ Categorical(softmax(logits / T)).
The logits are first shifted by their row max m (``row_shift``, as ``gumbel_softmax`` does), so the key is
``(logits - m) / T + g``: the same draw in law, but g is not lost to rounding at large |logits|. The noise is the
RNG contract's (``rng``), element for element the one ``gumbel_softmax`` draws, so that at T = 1 the draw is
``gumbel_softmax(hard=True)``'s argmax for the same seed.
"""

from __future__ import annotations

import torch

from .gumbel_softmax import row_shift
from .rng import gumbel_from_uniform_ref, math_dtype, uniform_ref

# The index of a draw that does not exist: a row with no drawable category, or a top-k slot past the last one.
NO_DRAW = -1


def sampling_scores_ref(
    logits: torch.Tensor, seed: torch.Tensor | int, temperature: torch.Tensor | float
) -> torch.Tensor:
    """``z = (logits - m) / T + g`` for ``(outer, K, inner)`` logits, in the math dtype; m = ``row_shift``.

    Why the shift: unshifted, at |logits| = 1e8 fp32's spacing (8) swallows g and tied logits always give the
    first index; shifted, the categories that can be drawn are near 0, where g keeps its precision. It cannot
    change the law: every key of a row moves by the same m / T. A difference beyond the dtype's range
    (3e38 - -3e38 in fp32) becomes -inf, a category of probability exp(-6e38) taken as never drawn.
    The order of operations is every backend's: subtract, then divide by T (a division, not a multiply by
    1 / T, so every backend rounds z the same way), then add g; at T = 1, z is exactly ``gumbel_softmax``'s
    ``((logits - m) + g) / 1``.
    """
    outer, n_cols, inner = logits.shape
    mdt = math_dtype(logits.dtype)
    x = logits.to(mdt)
    g = gumbel_from_uniform_ref(uniform_ref(seed, outer, n_cols, inner, logits.device), mdt)
    return (x - row_shift(x)) / torch.as_tensor(temperature, dtype=mdt, device=logits.device) + g


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
