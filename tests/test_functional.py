"""The public ``gumbel_softmax``: drop-in semantics, reproducibility, edge cases and bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from gumbel_fused import gumbel_softmax

from .conftest import DTYPES


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("hard", [False, True])
def test_output_shape_dtype_device(dtype, hard):
    x = torch.randn(4, 3, 7).to(dtype)
    y = gumbel_softmax(x, 0.5, hard)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.allclose(y.double().sum(-1), torch.ones(4, 3, dtype=torch.float64), atol=1e-2)


def test_hard_is_exact_one_hot():
    y = gumbel_softmax(torch.randn(64, 13), tau=0.3, hard=True)
    assert set(y.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(y.sum(-1), torch.ones(64))


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2])
def test_any_dim_equals_moving_dim_last(dim):
    # The noise follows the logical layout: sampling along `dim` is sampling the moved-dim tensor.
    x = torch.randn(5, 6, 7)
    torch.manual_seed(3)
    y = gumbel_softmax(x, 0.8, dim=dim)
    torch.manual_seed(3)
    y_last = gumbel_softmax(x.movedim(dim, -1).contiguous(), 0.8, dim=-1)
    torch.testing.assert_close(y, y_last.movedim(-1, dim))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda x: x.t(), id="transposed"),
        pytest.param(lambda x: x[:, ::2], id="strided-columns"),
        pytest.param(lambda x: x[1:-1, 3:], id="sliced"),
        pytest.param(lambda x: x.unsqueeze(1).expand(-1, 3, -1)[:, 1], id="expanded"),
    ],
)
def test_non_contiguous_input_matches_contiguous_copy(make):
    x = make(torch.randn(40, 40))
    for hard in (False, True):
        torch.manual_seed(11)
        y = gumbel_softmax(x, 0.6, hard)
        torch.manual_seed(11)
        want = gumbel_softmax(x.contiguous(), 0.6, hard)
        torch.testing.assert_close(y, want, rtol=0, atol=0)


def test_manual_seed_and_rng_state_reproduce():
    x = torch.randn(8, 10)
    torch.manual_seed(0)
    a = gumbel_softmax(x)
    state = torch.get_rng_state()
    b = gumbel_softmax(x)
    torch.set_rng_state(state)
    c = gumbel_softmax(x)
    torch.manual_seed(0)
    assert torch.equal(gumbel_softmax(x), a)
    assert torch.equal(b, c) and not torch.equal(a, b)


def test_generator_is_used_and_leaves_global_state_alone():
    x = torch.randn(8, 10)
    state = torch.get_rng_state()
    a = gumbel_softmax(x, generator=torch.Generator().manual_seed(5))
    b = gumbel_softmax(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)


def test_empty_and_single_category():
    assert gumbel_softmax(torch.empty(0, 5)).shape == (0, 5)
    assert gumbel_softmax(torch.empty(3, 0), hard=True).shape == (3, 0)
    assert torch.equal(gumbel_softmax(torch.randn(6, 1), hard=True), torch.ones(6, 1))
    assert torch.equal(gumbel_softmax(torch.randn(6, 1)), torch.ones(6, 1))
    assert gumbel_softmax(torch.tensor(2.0)).item() == 1.0


@pytest.mark.parametrize("hard", [False, True])
def test_minus_inf_is_never_drawn(hard):
    x = torch.zeros(2000, 6)
    x[:, ::2] = -math.inf
    y = gumbel_softmax(x, 0.5, hard)
    assert torch.all(y[:, ::2] == 0)
    assert torch.allclose(y.sum(-1), torch.ones(2000))


@pytest.mark.parametrize("hard", [False, True])
def test_nan_and_all_minus_inf_rows_stay_in_their_row(hard):
    x = torch.randn(4, 5)
    x[1, 2] = math.nan
    x[2] = -math.inf
    y = gumbel_softmax(x, 1.0, hard)
    assert torch.isnan(y[1]).all() and torch.isnan(y[2]).all()
    assert torch.isfinite(y[[0, 3]]).all()


def test_eps_is_deprecated_and_ignored():
    x = torch.randn(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gumbel_softmax(x)  # the default eps says nothing
    with pytest.warns(UserWarning, match="eps"):
        gumbel_softmax(x, eps=1e-3)
