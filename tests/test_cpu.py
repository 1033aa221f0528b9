"""The C++ CPU backend (csrc/, gumbel_fused/_cpu.py) against the RNG contract and the reference.

The kernels' own noise path is read through a test-only probe extension (cpu_probe/rng_probe.cpp), built
from the shipped headers with the kernels' flags, so the golden test checks the C++ words and uniforms bit
for bit, not a re-implementation. The forward and backward are compared with the reference over dtypes, K
from 1 to 70000, and every layout branch of the tile loader (csrc/tile.h): contiguous lanes (the dVAE
layout), row-major blocks, and the scalar gather. How the extension is found, built, cached and replaced by the
reference: test_cpu_build.py.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from gumbel_fused import _cpu
from gumbel_fused._ops import gumbel_softmax as _ops
from gumbel_fused.reference import (
    gumbel_softmax_bwd_ref,
    gumbel_softmax_fwd_ref,
    perturbed_logits_ref,
    philox_words_ref,
    uniform_from_words_ref,
)

from .conftest import DTYPES
from .helpers import KERNEL_TOL

PROBE_SOURCE = Path(__file__).resolve().parent / "cpu_probe" / "rng_probe.cpp"
TOL = KERNEL_TOL  # (atol, rtol) by dtype
SEED = 20240611
TAU = 0.7


def _compiler_available() -> bool:
    return shutil.which(os.environ.get("CXX", "c++")) is not None


def require_kernels():
    """The extension; its absence is a failure wherever a compiler exists (a skip would hide a broken build)."""
    module = _cpu.load_cpu_kernels()
    if module is None:
        if not _compiler_available():
            pytest.skip("no C++ compiler: the CPU kernels fall back to the reference")
        pytest.fail("a C++ compiler is present, but the CPU kernels did not build (see the warning)")
    return module


def load_probe():
    """The probe of the kernels' noise path: built once per change of it or of csrc/ (the name's digest
    covers both) for this CPU's variant, with the kernels' flags, into the kernels' cache."""
    variant = _cpu.cpu_variant()
    name = _cpu.extension_name(variant, prefix="gumbel_fused_probe", extra_files=[PROBE_SOURCE])
    return _cpu.load_extension(name, [PROBE_SOURCE], variant)


@pytest.fixture(scope="module")
def kernels():
    return require_kernels()


@pytest.fixture(scope="module")
def probe(kernels):
    return load_probe()


def _logits(outer, n_cols, inner, dtype, layout, gen_seed=0) -> torch.Tensor:
    """(outer, K, inner) logits of the same values stored in one of several layouts."""
    gen = torch.Generator().manual_seed(gen_seed)
    if layout == "contiguous":
        x = torch.randn(outer, n_cols, inner, generator=gen) * 2
    elif layout == "permuted":  # stored (inner, K, outer): no dim contiguous, the scalar gather
        x = (torch.randn(inner, n_cols, outer, generator=gen) * 2).permute(2, 1, 0)
    elif layout == "k-contiguous":  # stored (outer, inner, K): K contiguous, rows `K` apart even with inner > 1
        x = (torch.randn(outer, inner, n_cols, generator=gen) * 2).transpose(1, 2)
    elif layout == "sliced":  # every other element of a wider tensor along each dim
        x = (torch.randn(2 * outer, 2 * n_cols, 2 * inner, generator=gen) * 2)[::2, ::2, ::2]
    else:
        raise ValueError(layout)
    return x.to(dtype)


def _assert_hard_matches(ours, ref, z, msg=""):
    """Hard samples equal, NaN rows in the same places; a differing row is only allowed at a near-tie of
    the reference's z (its two largest within 1e-5 relative), where last-bit differences in g decide."""
    nan_ours, nan_ref = torch.isnan(ours).any(dim=1), torch.isnan(ref).any(dim=1)
    assert torch.equal(nan_ours, nan_ref), f"{msg}: NaN rows differ"
    same = (ours == ref) | (torch.isnan(ours) & torch.isnan(ref))
    bad_rows = ~same.all(dim=1)
    if bad_rows.any():
        assert z.shape[1] >= 2, f"{msg}: K = 1 cannot tie"
        top2 = z.double().topk(2, dim=1).values
        gap = (top2[:, 0] - top2[:, 1]).abs() / top2[:, 0].abs().clamp_min(1.0)
        assert (gap[bad_rows] < 1e-5).all(), f"{msg}: {int(bad_rows.sum())} rows differ away from a tie"
        assert bad_rows.float().mean() < 1e-3, f"{msg}: too many near-tie disagreements"
    assert ((ours == 0) | (ours == 1) | torch.isnan(ours)).all(), f"{msg}: not an exact one-hot"


# --- the RNG contract --------------------------------------------------------------------------------------


def test_golden_words_and_uniforms(probe, rng_golden):
    for case in rng_golden["cases"]:
        rows = torch.tensor([r["row"] for r in case["rows"]], dtype=torch.int64)
        words, u, g32, g64 = probe.philox_uniform(case["seed"], rows, case["K"])
        want_words = torch.tensor([[int(w, 16) for w in r["words"]] for r in case["rows"]], dtype=torch.int64)
        want_u = torch.tensor([r["u"] for r in case["rows"]], dtype=torch.float32)
        assert torch.equal(words, want_words), f"seed {case['seed']} K {case['K']}"
        assert torch.equal(u, want_u), f"seed {case['seed']} K {case['K']}"  # bit for bit
        want_g = torch.tensor([r["g"] for r in case["rows"]], dtype=torch.float64)  # fp64, Python's math
        torch.testing.assert_close(g64, want_g, rtol=0, atol=1e-13)
        torch.testing.assert_close(g32.double(), want_g, rtol=0, atol=8e-6)


def test_golden_word_to_uniform_edges_give_finite_noise(probe, rng_golden):
    table = rng_golden["word_to_uniform"]
    words = torch.tensor([int(w, 16) for w in table], dtype=torch.int64)
    u, g32, g64 = probe.gumbel_from_words(words)
    assert torch.equal(u, torch.tensor(list(table.values()), dtype=torch.float32))
    for word in (0x00000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
        assert word in words.tolist()
    want_g = torch.tensor(list(rng_golden["word_to_gumbel"].values()), dtype=torch.float64)
    torch.testing.assert_close(g64, want_g, rtol=0, atol=1e-13)
    # Contract v2, g = -log(-log1p(-u)): u = 0 (words 0 and 0xFFFFFFFF) becomes the smallest uniform (~2^-31),
    # whose g is the cap, 21.488; the largest u, 1 - 2^-24, gives the lower end, -log(24 log 2) = -2.812.
    assert g64.max().item() == pytest.approx(-math.log(-math.log1p(-_uniform_scale())), abs=1e-12)
    assert g64.min().item() == pytest.approx(-math.log(24 * math.log(2)), abs=1e-9)


@pytest.mark.parametrize("n_cols", [1, 3, 4, 10, 37])
def test_words_match_the_reference(probe, n_cols):
    rows = torch.cat([torch.arange(40), torch.tensor([2**31 - 1, 2**32 + 5, 3 * 2**40 + 17])])
    for seed in (0, 1, -1, 2**62 + 12345):
        words, u, _, _ = probe.philox_uniform(seed, rows, n_cols)
        want = philox_words_ref(seed, rows, n_cols)
        assert torch.equal(words, want) and torch.equal(u, uniform_from_words_ref(want))


def test_gumbel_noise_is_accurate(probe):
    """The kernels' g against -log(-log1p(-u)) in fp64 from the same u, over a million words and the 2^16
    smallest uniforms (g's upper tail, up to the cap)."""
    words = torch.randint(0, 2**32, (1 << 20,), generator=torch.Generator().manual_seed(3), dtype=torch.int64)
    edges = torch.tensor([0, 1, 0x7FFFFFFE, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF])
    words = torch.cat([words, edges, torch.arange(2**16)])
    u, g32, g64 = probe.gumbel_from_words(words)
    truth = -torch.log(-torch.log1p(-u.double().clamp_min(_uniform_scale())))
    assert (g32.double() - truth).abs().max().item() < 4e-6  # a few fp32 ulps of |g| <= 21.5
    assert (g64 - truth).abs().max().item() < 1e-13


def _uniform_scale() -> float:
    return torch.tensor(4.6566127342e-10, dtype=torch.float32).item()


def test_hard_forward_pruning_bound_holds(probe):
    """The hard forward skips g's logs where a cheap upper bound on g cannot beat the row max (noise.h); the
    bound must hold for every uniform. Exhaustive over u in [0, 1/8) (words 0 .. 2^28 - 1), where g is large
    (> 2.0) and the bound is tightest, and every 89th word above (where the bound is loose by construction)."""
    checked, violations, max_slack = probe.check_gumbel_bound(0, 2**28 - 1, 1)
    assert checked == 2**28 and violations == 0
    assert max_slack < 0.13  # tight where it matters: log(E / u) ~ u / 2 from E >= u, 0.06 from the exponent bits
    checked, violations, _ = probe.check_gumbel_bound(2**28, 2**31 - 1, 89)
    assert checked > 2e7 and violations == 0


# --- forward and backward against the reference --------------------------------------------------------------


# (outer, K, inner): K from the list; inner sizes for the dVAE branch (whole 16-row tiles),
# tiles that wrap around `outer` (inner 3, 20), and partial tiles.
FWD_SHAPES = [
    (37, 1, 1), (5, 2, 1), (4, 3, 1), (4, 4, 1), (3, 5, 1), (37, 10, 1), (6, 127, 1), (3, 1024, 1),
    (2, 4097, 1), (2, 70000, 1), (2, 10, 3), (3, 5, 20), (2, 127, 32), (1, 1024, 48), (2, 33, 17),
]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", FWD_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_reference(kernels, shape, dtype):
    layouts = ["contiguous", "permuted"] if shape[1] * shape[0] * shape[2] <= 5000 else ["contiguous"]
    for layout in layouts:
        x = _logits(*shape, dtype, layout, gen_seed=shape[1])
        z = perturbed_logits_ref(x, SEED, TAU)
        for hard in (False, True):
            ours = kernels.fwd(x, SEED, TAU, hard)
            ref = gumbel_softmax_fwd_ref(x, SEED, TAU, hard)
            assert ours.dtype == dtype and ours.shape == x.shape and ours.is_contiguous()
            msg = f"{layout} hard={hard}"
            if hard:
                _assert_hard_matches(ours, ref, z, msg)
            else:
                atol, rtol = TOL[dtype]
                torch.testing.assert_close(ours, ref, atol=atol, rtol=rtol, msg=msg)


@pytest.mark.parametrize("layout", ["permuted", "k-contiguous", "sliced"])
@pytest.mark.parametrize("shape", [(3, 40, 1), (2, 40, 16), (2, 17, 33)], ids=lambda s: "x".join(map(str, s)))
def test_forward_and_backward_with_arbitrary_strides(kernels, shape, layout):
    x = _logits(*shape, torch.float32, layout, gen_seed=7)
    grad = _logits(*shape, torch.float32, layout, gen_seed=8)
    for hard in (False, True):
        ref = gumbel_softmax_fwd_ref(x, SEED, 1.0, hard)
        torch.testing.assert_close(kernels.fwd(x, SEED, 1.0, hard), ref, atol=2e-6, rtol=2e-5)
    y = gumbel_softmax_fwd_ref(x, SEED, 1.0, False)
    for recompute, saved in ((True, x), (False, y.transpose(0, 2).contiguous().transpose(0, 2))):
        ours = kernels.bwd(grad, saved, SEED, 1.0, recompute)
        ref = gumbel_softmax_bwd_ref(grad, saved, SEED, 1.0, recompute)
        torch.testing.assert_close(ours, ref, atol=2e-6, rtol=2e-5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_wide_hard_forward_for_channel_first_layouts(kernels, dtype):
    """Positions contiguous in whole multiples of 256 take the wide-tile hard forward (csrc/hard_wide.h),
    for fp16/bf16/fp32; fp64 and other layouts take the 16-row tiles. Both must agree with the reference,
    NaN and masked rows included."""
    for shape in [(2, 37, 256), (1, 10, 512), (3, 5, 768)]:
        x = _logits(*shape, torch.float32, "contiguous", gen_seed=shape[2])
        x[0, :, 3] = float("-inf")  # no finite logit: NaN column
        x[0, 2, 7] = float("nan")
        x[-1, 1:, 100] = float("-inf")  # one category left
        x = x.to(dtype)
        for tau in (1.0, 0.5):
            ours, ref = kernels.fwd(x, SEED, tau, True), gumbel_softmax_fwd_ref(x, SEED, tau, True)
            _assert_hard_matches(ours, ref, perturbed_logits_ref(x, SEED, tau))
            assert torch.isnan(ours[0, :, 3]).all() and torch.isnan(ours[0, :, 7]).all()
            assert ours[-1, 0, 100] == 1


def test_broadcast_logits_with_zero_strides(kernels):
    x = torch.randn(1, 50, 1).expand(64, 50, 8)  # stride 0 on outer and inner
    for hard in (False, True):
        torch.testing.assert_close(kernels.fwd(x, SEED, 1.0, hard), gumbel_softmax_fwd_ref(x, SEED, 1.0, hard))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(37, 10, 1), (3, 1024, 1), (2, 4097, 1), (2, 127, 32), (2, 33, 17)],
                         ids=lambda s: "x".join(map(str, s)))  # fmt: skip
def test_backward_matches_reference(kernels, shape, dtype):
    x = _logits(*shape, dtype, "contiguous", gen_seed=1)
    grad = _logits(*shape, dtype, "permuted", gen_seed=2)
    y = gumbel_softmax_fwd_ref(x, SEED, TAU, False)
    atol, rtol = TOL[dtype]
    scale = max(1.0, grad.double().abs().max().item() / TAU)  # dx is y * (dy - s) / tau, so scale atol
    for recompute, saved in ((True, x), (False, y)):
        ours = kernels.bwd(grad, saved, SEED, TAU, recompute)
        ref = gumbel_softmax_bwd_ref(grad, saved, SEED, TAU, recompute)
        assert ours.dtype == dtype and ours.is_contiguous()
        torch.testing.assert_close(ours, ref, atol=atol * scale, rtol=rtol, msg=f"recompute={recompute}")


def test_tau_variants_and_seeds(kernels):
    x = _logits(9, 33, 5, torch.float32, "contiguous")
    for tau in (1.0, 0.1, 3.0, 1e-3):
        for s in (0, -7, 2**63 - 1):
            z = perturbed_logits_ref(x, s, tau)
            _assert_hard_matches(kernels.fwd(x, s, tau, True), gumbel_softmax_fwd_ref(x, s, tau, True), z)
            ref = gumbel_softmax_fwd_ref(x, s, tau, False)
            torch.testing.assert_close(kernels.fwd(x, s, tau, False), ref, atol=2e-6, rtol=1e-4)


# --- special values, empty tensors, validation ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("inner", [1, 16])
def test_inf_and_nan_rows(kernels, dtype, inner):
    x = torch.randn(8, 12, inner)
    x[0, :, :] = float("-inf")  # no finite logit: NaN row
    x[1, 3, :] = float("nan")  # a NaN: NaN row
    x[2, 5, :] = float("inf")  # +inf: +inf - +inf in the softmax, NaN row as in the reference
    x[3, ::2, :] = float("-inf")  # masked categories: exactly 0, never drawn
    x[4, 1:, :] = float("-inf")  # one category left: always drawn
    x = x.to(dtype)
    for hard in (False, True):
        ours = kernels.fwd(x, SEED, 1.0, hard)
        ref = gumbel_softmax_fwd_ref(x, SEED, 1.0, hard)
        assert torch.isnan(ours[:3]).all() and not torch.isnan(ours[3:]).any()
        assert (ours[3, ::2] == 0).all() and (ours[4, 0] == 1).all() and (ours[4, 1:] == 0).all()
        torch.testing.assert_close(ours, ref, atol=TOL[dtype][0], rtol=TOL[dtype][1], equal_nan=True)
    grad = torch.randn_like(x)
    dx = kernels.bwd(grad, x, SEED, 1.0, True)
    torch.testing.assert_close(dx, gumbel_softmax_bwd_ref(grad, x, SEED, 1.0, True), equal_nan=True,
                               atol=TOL[dtype][0] * 4, rtol=TOL[dtype][1])  # fmt: skip


def test_masked_categories_are_never_drawn(kernels):
    x = torch.zeros(4096, 7, 1)
    x[:, [1, 4]] = float("-inf")
    counts = kernels.fwd(x, SEED, 1.0, True).sum(dim=(0, 2))
    assert counts[[1, 4]].sum() == 0 and counts.sum() == 4096
    assert (counts[[0, 2, 3, 5, 6]] > 700).all()  # ~819 each: uniform over the five left


@pytest.mark.parametrize("shape", [(0, 5, 1), (3, 0, 2), (2, 4, 0)])
def test_empty_tensors(kernels, shape):
    x = torch.empty(shape)
    for hard in (False, True):
        y = kernels.fwd(x, SEED, 1.0, hard)
        assert y.shape == shape and y.dtype == x.dtype
    assert kernels.bwd(x, x, SEED, 1.0, True).shape == shape


def test_input_validation(kernels):
    x = torch.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match="dim 3 out of range"):
        kernels.fwd(x, SEED, 1.0, False, 3)
    for seed in (torch.tensor([1, 2]), torch.tensor(1.0), torch.tensor(1, dtype=torch.int32)):
        with pytest.raises(ValueError, match="argument 'seed' must be a 0-dim int64 CPU tensor"):
            torch.ops.gumbel_fused.gumbel_softmax_fwd(x, seed, torch.tensor(1.0), False)
    with pytest.raises(TypeError):  # the C++ entry points take an int
        kernels.fwd(x, 1.5, 1.0, False)
    with pytest.raises(RuntimeError, match="float16, bfloat16, float32 or float64"):
        kernels.fwd(x.long(), SEED, 1.0, False)
    with pytest.raises(RuntimeError, match="same shape"):
        kernels.bwd(torch.randn(2, 3, 5), x, SEED, 1.0, True)
    with pytest.raises(RuntimeError, match="same dtype"):
        kernels.bwd(x.double(), x, SEED, 1.0, True)


# --- threads, dispatch -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(600, 300, 1), (2, 256, 96), (3, 70, 50), (4, 40, 512)])
def test_results_do_not_depend_on_the_thread_count(kernels, shape):
    x = _logits(*shape, torch.float32, "contiguous", gen_seed=5)
    grad = torch.randn_like(x)
    threads = torch.get_num_threads()

    def run():
        return [kernels.fwd(x, SEED, 0.5, hard) for hard in (False, True)] + [
            kernels.bwd(grad, x, SEED, 0.5, True)
        ]

    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


def test_the_seed_is_torch_randints_draw(kernels):
    # An eager CPU call's seed (gumbel_fused._ops.seed.seed_for) is drawn in C++ as an int: the value torch.randint
    # gives, leaving the generator in the same state, for the default generator and a caller's.
    ours, theirs = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    drawn = [kernels.seed(ours) for _ in range(100)]
    assert drawn == [int(torch.randint(2**63 - 1, (), generator=theirs)) for _ in range(100)]
    assert torch.equal(ours.get_state(), theirs.get_state())
    torch.manual_seed(5)
    drawn = [kernels.seed(), kernels.seed()]
    torch.manual_seed(5)
    assert drawn == [int(torch.randint(2**63 - 1, ())) for _ in range(2)]


def test_ops_use_the_cpu_kernels(kernels):
    """CPU tensors reach the C++ kernels through the op layer: same bits as calling the extension."""
    x = torch.randn(6, 20, 3)
    tau = torch.tensor(0.5, dtype=torch.float64)
    for hard in (False, True):
        assert torch.equal(_ops.gumbel_softmax_fwd(x, SEED, tau, hard), kernels.fwd(x, SEED, 0.5, hard))
