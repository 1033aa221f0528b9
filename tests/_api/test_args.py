"""The public function's arguments: what it accepts beyond floats and ints (as ``F.gumbel_softmax`` does),
what it rejects, and messages that name the function and the argument, with torch's exception types."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gumbel_fused import gumbel_softmax

X = torch.randn(4, 6)


def _same_noise(tau=0.5, dim=-1, hard=False, x=X):
    return gumbel_softmax(x, tau, hard, dim=dim, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("dim", [np.int64(1), np.int32(-1), torch.tensor(1), torch.tensor(-1, dtype=torch.int32)])
def test_integer_like_dim_is_accepted_as_by_torch(dim):
    F.gumbel_softmax(X, dim=dim)  # torch takes anything with __index__
    assert torch.equal(_same_noise(dim=dim), _same_noise(dim=1))


@pytest.mark.parametrize(
    "tau",
    [Fraction(1, 2), np.float32(0.5), np.float64(0.5), torch.tensor(0.5), torch.tensor([0.5]), torch.tensor([[0.5]])],
)
def test_number_like_and_one_element_tensor_tau_equal_the_float(tau):
    assert torch.equal(_same_noise(tau), _same_noise(0.5))


def test_integer_tensor_tau_is_a_temperature():
    assert torch.equal(_same_noise(torch.tensor(2)), _same_noise(2.0))


def test_tensor_tau_with_more_dims_than_the_logits_broadcasts_as_in_torch():
    x = torch.randn(6)
    tau = torch.full((1, 1), 0.5)
    assert _same_noise(tau, x=x).shape == F.gumbel_softmax(x, tau).shape == (1, 6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_tau_must_lie_in_the_normal_range_of_the_math_dtype(dtype):
    # fp16/bf16/fp32 logits are sampled in fp32, fp64 logits in fp64. At the bottom of the range
    # (logits + g) / tau overflows to inf and rows are NaN, as with F; at the top samples are uniform.
    info = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32)
    x = X.to(dtype)
    gumbel_softmax(x, info.tiny)
    gumbel_softmax(x, torch.tensor(info.tiny, dtype=torch.float64))
    assert torch.isfinite(_same_noise(info.max, x=x, hard=True)).all()
    for tau in (info.tiny / 2, 5e-324) if dtype == torch.float64 else (1e-45, 1e-39, 1e39):  # fp64: none above
        for value in (tau, torch.tensor(tau, dtype=torch.float64)):
            with pytest.raises(ValueError, match=r"argument 'tau' must be in \[.*normal range of torch.float"):
                gumbel_softmax(x, value)


@pytest.mark.parametrize("tau", [0, -1.0, math.nan, math.inf, -math.inf])
def test_non_positive_or_non_finite_tau_is_a_value_error(tau):
    # F.gumbel_softmax accepts these and returns garbage (tau = -1 samples the argmin).
    for value in (tau, torch.tensor(tau), torch.tensor([tau])):
        with pytest.raises(ValueError, match=r"gumbel_softmax\(\): argument 'tau' must be a positive finite number"):
            gumbel_softmax(X, value)


@pytest.mark.parametrize("tau", [torch.ones(6), torch.ones(4, 1), torch.ones(0)])
def test_tau_of_more_than_one_element_is_a_value_error(tau):
    with pytest.raises(ValueError, match=r"argument 'tau' must be a number or a one-element tensor, but got a tensor"):
        gumbel_softmax(X, tau)


# Bad input on which F.gumbel_softmax raises too: ours raises the same type (except where F fails deep inside
# with a RuntimeError about another op), with a message naming gumbel_softmax and the argument.
NOT_FLOAT = "argument 'logits' must be a floating point tensor"
BAD_INPUT = [
    pytest.param(dict(logits=[[1.0, 2.0]]), TypeError, "argument 'logits' must be Tensor, not list", id="logits-list"),
    pytest.param(dict(logits=torch.zeros(2, 3, dtype=torch.int64)), TypeError, NOT_FLOAT + ".*int64", id="logits-int"),
    pytest.param(dict(logits=torch.zeros(2, 3, dtype=torch.bool)), TypeError, NOT_FLOAT + ".*bool", id="logits-bool"),
    pytest.param(dict(logits=torch.zeros(2, 3).cfloat()), TypeError, NOT_FLOAT + ".*complex64", id="logits-complex"),
    pytest.param(dict(dim=1.0), TypeError, "argument 'dim' must be int, not float", id="dim-float"),
    pytest.param(dict(dim="1"), TypeError, "argument 'dim' must be int, not str", id="dim-str"),
    pytest.param(dict(dim=None), TypeError, "argument 'dim' must be int, not NoneType", id="dim-none"),
    pytest.param(dict(dim=True), TypeError, "argument 'dim' must be int, not bool", id="dim-bool"),
    pytest.param(dict(dim=torch.tensor(1.0)), TypeError, "argument 'dim' must be int, not Tensor", id="dim-fp-tensor"),
    pytest.param(dict(dim=torch.tensor([1])), TypeError, "argument 'dim' must be int, not Tensor", id="dim-1d-tensor"),
    pytest.param(dict(tau="1"), TypeError, "argument 'tau' must be float or Tensor, not str", id="tau-str"),
    pytest.param(dict(tau=None), TypeError, "argument 'tau' must be float or Tensor, not NoneType", id="tau-none"),
    pytest.param(dict(tau=[1.0]), TypeError, "argument 'tau' must be float or Tensor, not list", id="tau-list"),
    pytest.param(dict(tau=torch.tensor(1j)), TypeError, "argument 'tau' must be a real number", id="tau-complex"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_INPUT)
def test_bad_input_raises_like_torch(kwargs, error, message):
    kwargs = {"logits": X, **kwargs}
    with pytest.raises(Exception) as theirs:
        F.gumbel_softmax(**kwargs)
    with pytest.raises(error, match=f"gumbel_softmax\\(\\): {message}"):
        gumbel_softmax(**kwargs)
    assert isinstance(theirs.value, error) or isinstance(theirs.value, RuntimeError | NotImplementedError)


@pytest.mark.parametrize("dim", [2, -3])
def test_out_of_range_dim_raises_what_torch_raises(dim):
    with pytest.raises(IndexError) as theirs:
        F.gumbel_softmax(X[:2, :3], dim=dim)
    with pytest.raises(IndexError) as ours:
        gumbel_softmax(X[:2, :3], dim=dim)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("tau", [True, False])
def test_bool_tau_is_a_type_error(tau):
    # F takes True as 1 (usually `hard` passed in tau's place); refusing it catches that slip.
    with pytest.raises(TypeError, match=r"gumbel_softmax\(\): argument 'tau' must be float or Tensor, not bool"):
        gumbel_softmax(X, tau)


def test_bad_generator_is_a_type_error():
    with pytest.raises(TypeError, match=r"gumbel_softmax\(\): argument 'generator' must be torch.Generator, not int"):
        gumbel_softmax(X, generator=0)


def test_generator_under_compile():
    # fullgraph: a clear error (a graph cannot draw from a Generator); otherwise a graph break, then eager.
    generator = torch.Generator().manual_seed(4)
    torch._dynamo.reset()
    full = torch.compile(lambda x, g: gumbel_softmax(x, 0.5, generator=g), fullgraph=True)
    with pytest.raises(Exception, match="argument 'generator' is not supported inside torch.compile"):
        full(X, generator)
    partial = torch.compile(lambda x, g: gumbel_softmax(x, 0.5, generator=g) * 2)
    got = partial(X, torch.Generator().manual_seed(3))
    assert torch.equal(got, 2 * _same_noise(0.5))


def test_empty_logits_keep_the_autograd_graph():
    x = torch.empty(0, 5, requires_grad=True)
    y = gumbel_softmax(x)
    assert y.shape == (0, 5) and y.requires_grad
    y.sum().backward()
    assert x.grad.shape == (0, 5)
