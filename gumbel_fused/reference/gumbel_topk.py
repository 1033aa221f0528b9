"""Reference ``gumbel_topk`` on the op layout ``(outer, K, inner)``: k draws without replacement, in order.

Gumbel-top-k trick (Kool, van Hoof, Welling, "Stochastic Beams and Where to Find Them", ICML 2019,
arXiv:1903.06059): the indices of the k largest ``logits / T + g``, in decreasing order, are an ordered sample
without replacement from softmax(logits / T), i.e. Plackett-Luce. The keys are ``gumbel_max``'s, shifted by the
row max (``sampling_scores_ref``), so the first slot is ``gumbel_max``'s draw. A full stable sort is fine here:
this is the oracle, speed is the kernels' job.
"""

from __future__ import annotations

import torch

from .gumbel_max import NO_DRAW, sampling_scores_ref, undefined_rows


def gumbel_topk_ref(
    logits: torch.Tensor, seed: torch.Tensor, temperature: torch.Tensor | float, k: int
) -> torch.Tensor:
    """The k drawn categories of each row, in draw order: int64 ``(outer, k, inner)``.

    Ties (measure zero) go to the lower index first, as in ``gumbel_max``. A slot whose score is -inf (the row
    has fewer than k drawable categories) holds ``NO_DRAW``, and so does every slot of an undefined row.
    """
    z = sampling_scores_ref(logits, seed, temperature)
    scores, order = torch.sort(z, dim=1, descending=True, stable=True)
    scores, order = scores[:, :k], order[:, :k]
    missing = (scores == float("-inf")) | undefined_rows(z).unsqueeze(1)
    return torch.where(missing, NO_DRAW, order)
