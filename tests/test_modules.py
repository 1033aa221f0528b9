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


@pytest.mark.parametrize("hard", [False, True])
def test_eval_and_train_agree_on_nan_and_impossible_rows(hard):
    x = torch.randn(4, 5)
    x[1, 2] = float("nan")
    x[2] = float("-inf")
    module = GumbelSoftmax(tau=0.5, hard=hard)
    for training in (True, False):
        y = module.train(training)(x)
        assert torch.isnan(y[[1, 2]]).all() and torch.isfinite(y[[0, 3]]).all()


def test_learnable_temperature_is_a_registered_parameter_with_a_gradient():
    module = GumbelSoftmax(tau=torch.nn.Parameter(torch.ones(1)), hard=True)
    assert [name for name, _ in module.named_parameters()] == ["tau"]
    x, weight = torch.randn(8, 5), torch.randn(8, 5)
    (module(x) * weight).sum().backward()
    assert module.tau.grad.shape == (1,) and module.tau.grad.abs() > 0
    module.eval()
    torch.testing.assert_close(module(x), torch.nn.functional.one_hot(x.argmax(-1), 5).float())


@pytest.mark.parametrize("tau", [torch.ones(3), "1", True])
def test_bad_tau_types_and_shapes(tau):
    with pytest.raises((TypeError, ValueError), match="GumbelSoftmax\\(\\): argument 'tau'"):
        GumbelSoftmax(tau=tau)


def test_compiled_module_anneals_without_recompiling():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    module = GumbelSoftmax(tau=1.0, hard=True)
    compiled = torch.compile(module, fullgraph=True)
    for step in range(8):
        module.tau = max(0.5, 0.9**step)
        compiled(torch.randn(4, 10))
    assert counters["stats"]["unique_graphs"] <= 2  # tau static, then dynamic (Dynamo's automatic dynamic)
