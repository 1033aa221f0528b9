"""Pure-PyTorch reference backend: the test oracle and the fallback wherever no kernel applies.

It is deliberately plain, one module per op plus the RNG contract (``rng``); speed is the kernels' job.
"""

from .estimators import ESTIMATORS, estimator_grad_ref, estimator_index, sample_index_ref
from .gumbel_max import NO_DRAW, gumbel_max_ref, sampling_scores_ref
from .gumbel_softmax import (
    gumbel_softmax_bwd_ref,
    gumbel_softmax_fwd_ref,
    one_hot_argmax,
    perturbed_logits_ref,
    row_shift,
    softmax_ref,
)
from .gumbel_topk import gumbel_topk_ref
from .rng import (
    GUMBEL_CAP,
    UNIFORM_SCALE,
    exponential_from_uniform_ref,
    gumbel_from_uniform_ref,
    math_dtype,
    philox4x32_ref,
    philox_words_ref,
    uniform_from_words_ref,
    uniform_ref,
)

__all__ = [
    "ESTIMATORS",
    "GUMBEL_CAP",
    "NO_DRAW",
    "UNIFORM_SCALE",
    "estimator_grad_ref",
    "estimator_index",
    "exponential_from_uniform_ref",
    "gumbel_from_uniform_ref",
    "gumbel_max_ref",
    "gumbel_softmax_bwd_ref",
    "gumbel_softmax_fwd_ref",
    "gumbel_topk_ref",
    "math_dtype",
    "one_hot_argmax",
    "perturbed_logits_ref",
    "philox4x32_ref",
    "philox_words_ref",
    "row_shift",
    "sample_index_ref",
    "sampling_scores_ref",
    "softmax_ref",
    "uniform_from_words_ref",
    "uniform_ref",
]
