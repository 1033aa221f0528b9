"""Pure-PyTorch reference backend: the test oracle and the fallback wherever no kernel applies.

It is deliberately plain, one module per op plus the RNG contract (``rng``); speed is the kernels' job.
"""

from .gumbel_softmax import gumbel_softmax_bwd_ref, gumbel_softmax_fwd_ref, one_hot_argmax, perturbed_logits_ref
from .rng import (
    GUMBEL_CAP,
    UNIFORM_SCALE,
    gumbel_from_uniform_ref,
    math_dtype,
    philox4x32_ref,
    philox_words_ref,
    uniform_from_words_ref,
    uniform_ref,
)

__all__ = [
    "GUMBEL_CAP",
    "UNIFORM_SCALE",
    "gumbel_from_uniform_ref",
    "gumbel_softmax_bwd_ref",
    "gumbel_softmax_fwd_ref",
    "math_dtype",
    "one_hot_argmax",
    "perturbed_logits_ref",
    "philox4x32_ref",
    "philox_words_ref",
    "uniform_from_words_ref",
    "uniform_ref",
]
