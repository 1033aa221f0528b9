"""The Triton gumbel_softmax kernels: tiling independence and compile caching.

Without a GPU these run the kernels in Triton's interpreter on CPU tensors (see tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from gumbel_fused._triton import gumbel_softmax as kernels
from gumbel_fused._triton import tiles
from gumbel_fused.reference.estimators import sample_index_ref

from ..conftest import TRITON_DEVICE
from ..helpers import as_tensors, run_fwd


def test_noise_does_not_depend_on_tiling(monkeypatch):
    # The same logits through the single-pass and the multi-pass kernel: the contract fixes the
    # noise per element, so only the softmax summation order may differ.
    x = torch.randn(3, 600, 1)
    single = run_fwd("triton", x, 5, 0.5, hard=True)
    monkeypatch.setattr(tiles, "MAX_SINGLE_BLOCK", 128)
    monkeypatch.setattr(tiles, "MULTI_BLOCK_K", 128)
    assert not tiles.launch_config(3, 600, 1)["SINGLE_PASS"]
    multi = run_fwd("triton", x, 5, 0.5, hard=True)
    assert torch.equal(single, multi)
    soft_multi = run_fwd("triton", x, 5, 0.5, hard=False)
    monkeypatch.undo()
    torch.testing.assert_close(run_fwd("triton", x, 5, 0.5, hard=False), soft_multi)


@pytest.mark.parametrize("n_cols", [40, 300])  # rows in one block, and in chunks (inner > 1 caps blocks at 64)
def test_forward_records_each_rows_category(n_cols):
    # What the estimators' forward keeps on CUDA, written by the launch that samples: each row's category is what
    # sample_index finds in the one-hot, 0 for a NaN row (argmax's first NaN); the sample itself is unchanged.
    x = torch.randn(4, n_cols, 3)
    x[1, 7, 0] = float("nan")
    x[2, :, 1] = float("-inf")  # no finite logit: a NaN row
    assert tiles.launch_config(12, n_cols, 3)["SINGLE_PASS"] == (n_cols <= 64)
    x = x.to(TRITON_DEVICE)
    seed, tau = as_tensors(5, 0.7, TRITON_DEVICE)
    y, category = kernels.gumbel_softmax_fwd(x, seed, tau, True, "reinmax", record_sample=True)
    torch.testing.assert_close(y, kernels.gumbel_softmax_fwd(x, seed, tau, True), rtol=0, atol=0, equal_nan=True)
    assert category.dtype == torch.int64 and category.shape == (4, 1, 3)
    assert torch.equal(category, sample_index_ref(y))
    with pytest.raises(ValueError, match="only a hard sample"):
        kernels.gumbel_softmax_fwd(x, seed, tau, False, record_sample=True)


@triton.jit
def _running_sum_kernel(values_ptr, out_ptr, n, COMPENSATED: tl.constexpr):
    """The long-row pass's accumulation of chunk sums, on its own: values[0] + ... + values[n - 1]."""
    total = tl.zeros((1,), tl.float32)
    error = tl.zeros((1,), tl.float32)
    for i in range(0, n):
        value = tl.load(values_ptr + i + tl.arange(0, 1))
        if COMPENSATED:
            total, error = kernels._compensated_add(total, error, value)
        else:
            total += value
    tl.store(out_ptr + tl.arange(0, 1), total + error)


def test_compensated_chunk_sums_keep_every_chunk():
    # A first chunk sum of 1 and 511 below half its ulp: a plain running sum drops all of them (~1.4e-5), the
    # compensated one keeps the total to within 2 u, whatever the chunk count (Neumaier's bound is
    # 2 u + O(n u**2), and n u**2 is 1e-11 at the 4096 chunks of K = 2**24 on a GPU).
    values = torch.rand(512, generator=torch.Generator().manual_seed(0)) * 2.0**-24 * 0.9
    values[0] = 1.0
    exact = values.double().sum().item()
    sums = {}
    for compensated in (True, False):
        out = torch.zeros(1, device=TRITON_DEVICE)
        _running_sum_kernel[(1,)](values.to(TRITON_DEVICE), out, len(values), COMPENSATED=compensated)
        sums[compensated] = out.item()
    assert abs(sums[True] - exact) <= 2 * 2.0**-24 * exact
    assert abs(sums[False] - exact) > 100 * 2.0**-24  # what the compensation is for


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compilation caching needs a real GPU")
def test_new_tau_and_seed_do_not_recompile():
    from gumbel_fused import gumbel_softmax

    x = torch.randn(64, 1000, device="cuda", requires_grad=True)
    gumbel_softmax(x, 1.0, hard=True).sum().backward()

    def compiled_variants():
        jitted = (kernels._gumbel_softmax_fwd_kernel, kernels._gumbel_softmax_bwd_kernel)
        # device_caches[device][0] is Triton's dict of compiled binaries, one per specialization.
        return [len(cache[0]) for k in jitted for cache in k.device_caches.values()]

    before = compiled_variants()
    for tau in (0.9, 0.73, 0.5):
        gumbel_softmax(x, tau, hard=True).sum().backward()
    assert compiled_variants() == before
