"""The ``GumbelSoftmax`` module."""

from __future__ import annotations

import pytest
import torch

from gumbel_fused import GumbelSoftmax, gumbel_softmax


def test_training_mode_samples_like_the_function():
    module = GumbelSoftmax(tau=0.5, hard=True, dim=1)
    x = torch.randn(4, 6, 3)
    torch.manual_seed(2)
    got = module(x)
    torch.manual_seed(2)
    assert torch.equal(got, gumbel_softmax(x, 0.5, True, dim=1))


def test_eval_mode_is_deterministic_and_draws_nothing():
    module = GumbelSoftmax(tau=2.0).eval()
    x = torch.randn(5, 7)
    state = torch.get_rng_state()
    torch.testing.assert_close(module(x), torch.softmax(x / 2.0, -1))
    assert torch.equal(torch.get_rng_state(), state)
    module.hard = True
    assert torch.equal(module(x), torch.nn.functional.one_hot(x.argmax(-1), 7).float())


def test_bad_tau():
    with pytest.raises(ValueError, match="tau"):
        GumbelSoftmax(tau=0.0)
