"""The reference gumbel_softmax's building blocks: the logit shift, the softmax and the one-hot."""

from __future__ import annotations

import torch

from gumbel_fused.reference import gumbel_softmax_fwd_ref, one_hot_argmax, perturbed_logits_ref, row_shift, softmax_ref

INF, NAN = float("inf"), float("nan")
# Rows whose softmax is NaN (a NaN, a +inf, all -inf), then ordinary and huge ones.
ROWS = [[1.0, NAN, 0.0], [INF, 0.0, -1.0], [-INF, -INF, -INF], [0.5, -INF, 2.0], [1e30, 1e30, -1e30], [-3.0, 7.0, 7.0]]


def _rows(dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(ROWS, dtype=dtype).unsqueeze(-1)  # (rows, K, 1)


def test_row_shift_is_the_finite_row_max_else_zero():
    want = torch.tensor([0.0, 0.0, 0.0, 2.0, 1e30, 7.0]).view(-1, 1, 1)
    assert torch.equal(row_shift(_rows()), want)


def test_softmax_is_torch_softmax_with_its_nan_rows():
    x = _rows(torch.float64)
    want = torch.softmax(x, dim=1)
    got = softmax_ref(x)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    torch.testing.assert_close(got.nan_to_num(), want.nan_to_num(), rtol=1e-15, atol=1e-300)


def test_one_hot_takes_the_first_of_tied_maxima_and_keeps_nan_rows():
    got = one_hot_argmax(_rows(), torch.bfloat16)
    assert got.dtype == torch.bfloat16 and got.is_contiguous()
    nan_rows = torch.isnan(got).all(dim=1).flatten().tolist()
    assert nan_rows == [True, True, True, False, False, False]
    assert got[3:].argmax(dim=1).flatten().tolist() == [2, 0, 1]
    assert torch.equal(got[3:].sum(dim=1), torch.ones(3, 1, dtype=torch.bfloat16))


def test_shift_keeps_the_noise_of_huge_logits():
    # Unshifted, (1e8 + g) rounds to a multiple of 8 in fp32, and nearly every g is lost: tied logits would
    # give the same z. Shifted, z - z[0] is g - g[0] to fp32 precision.
    x = torch.full((1, 64, 1), 1e8)
    z = perturbed_logits_ref(x, 9, 1.0)
    g = perturbed_logits_ref(torch.zeros_like(x), 9, 1.0)
    torch.testing.assert_close(z, g, rtol=0, atol=0)
    assert gumbel_softmax_fwd_ref(x, torch.tensor(9), 1.0, hard=True).argmax(dim=1).item() == g.argmax(dim=1).item()
