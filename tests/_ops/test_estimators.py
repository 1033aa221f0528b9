"""The estimators at the op boundary: opcheck, torch.compile, what the backward keeps, the sample they
share, gradcheck against the surrogates they differentiate, and bad arguments."""

from __future__ import annotations

import pytest
import torch

import gumbel_fused._ops.gumbel_softmax  # noqa: F401  (registers its torch.ops.gumbel_fused ops)
from gumbel_fused import GumbelSoftmax, _cpu, gumbel_softmax
from gumbel_fused.reference import ESTIMATORS, exponential_from_uniform_ref, perturbed_logits_ref, uniform_ref
from gumbel_fused.reference.estimators import GST_GAP, RAO_FIRST_STREAM

from ..helpers import as_tensors

OPS = torch.ops.gumbel_fused
HARD_ESTIMATORS = [name for name in ESTIMATORS if name != "st"]


@pytest.mark.parametrize("estimator", HARD_ESTIMATORS)
def test_opcheck(estimator):
    seed, tau = as_tensors(7, 0.6, "cpu")
    for shape, dim in [((4, 10, 1), 1), ((2, 5, 3), 1), ((1, 1, 1), 1), ((5, 2, 3, 4), 2)]:
        x = torch.randn(shape, requires_grad=True)
        torch.library.opcheck(OPS.gumbel_softmax_fwd.default, (x, seed, tau, True, dim, estimator, 3))
        grad = torch.randn(shape)
        sample = OPS.gumbel_softmax_fwd(x.detach(), seed, tau, True, dim).argmax(dim, keepdim=True)
        args = (grad, x.detach(), seed, tau, True, dim, estimator, 3, sample)
        torch.library.opcheck(OPS.gumbel_softmax_bwd.default, args)


def test_opcheck_sample_index():
    for shape, dim in [((4, 10, 1), 1), ((2, 5, 3), 1), ((1, 1, 1), 1), ((5, 2, 3, 4), 2), ((6, 7), 0)]:
        one_hot = OPS.gumbel_softmax_fwd(torch.randn(shape), torch.tensor(3), torch.tensor(1.0), True, dim)
        torch.library.opcheck(OPS.sample_index.default, (one_hot, dim))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape, dim", [((300, 10), 1), ((300, 10), 0), ((3, 700, 5), 1), ((4, 5, 2, 3), 3)])
def test_sample_index_is_the_argmax_of_the_one_hot(dtype, shape, dim):
    # Every kernel (C++ when built, else the reference) against torch.argmax: contiguous, and on a transposed copy
    # whose rows are strided; rows of NaN (an undefined sample) give 0, argmax's first NaN.
    logits = torch.randn(shape, dtype=dtype)
    logits.select(1 - dim if dim < 2 else 0, 2).fill_(float("nan"))
    one_hot = OPS.gumbel_softmax_fwd(logits, torch.tensor(11), torch.tensor(0.7), True, dim)
    strided = one_hot.mT.contiguous().mT
    for y in (one_hot, strided):
        expected = y.argmax(dim, keepdim=True)
        assert torch.equal(gumbel_fused._ops.gumbel_softmax.sample_index(y, dim), expected)
        assert torch.equal(OPS.sample_index(y, dim), expected)


def test_sample_index_of_no_categories_is_an_index_error_on_every_backend():
    # As torch.argmax (the reference): a row needs a category. No rows with categories is an empty result.
    for call in (gumbel_fused._ops.gumbel_softmax.sample_index, OPS.sample_index):
        with pytest.raises(IndexError):
            call(torch.empty(3, 0, 1), 1)
        assert call(torch.empty(0, 4, 1), 1).shape == (0, 1, 1)


def test_every_estimator_draws_the_same_sample():
    x = torch.randn(64, 9)
    samples = []
    for estimator in ESTIMATORS:
        torch.manual_seed(4)
        samples.append(gumbel_softmax(x, 0.5, hard=True, estimator=estimator, rao_samples=2))
    assert all(torch.equal(sample, samples[0]) for sample in samples)


@pytest.mark.parametrize("estimator", HARD_ESTIMATORS)
def test_backward_saves_no_full_size_tensor_besides_logits(estimator):
    # The logits, and the sampled category a row (so the backward draws no sample noise again).
    logits = torch.randn(64, 1000, requires_grad=True) * 1.0
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = gumbel_softmax(logits, 0.5, hard=True, estimator=estimator)
    assert [t.data_ptr() for t in saved if t.numel() > 64] == [logits.data_ptr()]
    assert [t.shape for t in saved if 1 < t.numel() <= 64] == [(64, 1)]
    y.sum().backward()


@pytest.mark.parametrize("estimator", HARD_ESTIMATORS)
def test_compile_fullgraph_matches_eager(estimator):
    x = torch.randn(8, 3, 10, requires_grad=True)
    weight = torch.arange(10.0)
    compiled = torch.compile(gumbel_softmax, fullgraph=True)
    grads = []
    for fn in (gumbel_softmax, compiled):
        torch.manual_seed(9)
        y = fn(x, 0.5, True, dim=2, estimator=estimator, rao_samples=3)
        grads.append(torch.autograd.grad((y * weight).sum(), x)[0])
    torch.testing.assert_close(grads[1], grads[0])


def _surrogate(estimator: str, x0: torch.Tensor, seed: int, tau: float, rao_samples: int):
    """The sampled category at ``x0`` and the smooth function of the logits whose vector-Jacobian product the
    estimator returns there: a softmax of the logits plus a shift computed once at x0 and then held fixed (the
    sample, the conditional noise, the gapped move), on ``(outer, K, inner)`` fp64 logits."""
    k = perturbed_logits_ref(x0, seed, tau).argmax(dim=1, keepdim=True)
    one_hot = torch.zeros_like(x0).scatter_(1, k, 1.0).bool()
    if estimator == "st":
        shifts = [perturbed_logits_ref(x0, seed, tau) * tau - x0]  # the sample's own Gumbel noise
    elif estimator == "plain_st":
        shifts = [torch.zeros_like(x0)]
    elif estimator == "gst":
        top = x0.amax(dim=1, keepdim=True)
        shifts = [torch.where(one_hot, top, torch.minimum(x0, top - GST_GAP)) - x0]
    else:  # gumbel_rao: the top-down conditional Gumbels z of each repeat, minus x0
        outer, n_cols, inner = x0.shape
        log_z = x0.logsumexp(dim=1, keepdim=True)
        shifts = []
        for repeat in range(rao_samples):
            u = uniform_ref(seed, outer, n_cols, inner, stream=RAO_FIRST_STREAM + repeat)
            e = exponential_from_uniform_ref(u, x0.dtype)
            top = log_z - torch.log((e * one_hot).sum(dim=1, keepdim=True))
            shifts.append(torch.where(one_hot, top, -torch.log(e * torch.exp(-x0) + torch.exp(-top))) - x0)
    return k, lambda x: torch.stack([torch.softmax((x + shift) / tau, dim=1) for shift in shifts]).mean(dim=0)


@pytest.mark.parametrize("estimator", ["st", "plain_st", "gst", "gumbel_rao"])
def test_gradcheck_against_the_smooth_surrogate(estimator):
    # Four estimators are the exact vector-Jacobian product of a smooth surrogate with the sample (and any
    # noise) held fixed: gradcheck compares the fused backward with finite differences of the surrogate.
    # ReinMax is not: 2 J((D + q) / 2) - J(pi) / 2 is the Jacobian of no function of the logits (it is
    # checked against its authors' backward in tests/reference/test_estimators.py instead).
    seed, tau, rao_samples = 3, 0.8, 4
    x0 = torch.randn(6, 5, 1, dtype=torch.float64)
    sample, surrogate = _surrogate(estimator, x0, seed, tau, rao_samples)

    class FusedBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return surrogate(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            seed_tau = as_tensors(seed, tau, "cpu")
            return OPS.gumbel_softmax_bwd(grad, x, *seed_tau, True, 1, estimator, rao_samples, sample)

    assert torch.autograd.gradcheck(FusedBackward.apply, (x0.clone().requires_grad_(),))


def test_module_passes_the_estimator_on():
    module = GumbelSoftmax(tau=0.5, hard=True, estimator="gumbel_rao", rao_samples=3)
    assert "estimator='gumbel_rao', rao_samples=3" in repr(module)
    x = torch.randn(4, 6, requires_grad=True)
    torch.manual_seed(1)
    want = torch.autograd.grad(gumbel_softmax(x, 0.5, True, estimator="gumbel_rao", rao_samples=3)[:, 0].sum(), x)
    torch.manual_seed(1)
    assert torch.equal(torch.autograd.grad(module(x)[:, 0].sum(), x)[0], want[0])
    with pytest.raises(ValueError, match="GumbelSoftmax\\(\\): argument 'estimator'='reinmax' requires hard=True"):
        GumbelSoftmax(estimator="reinmax")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(estimator="reinmax"), ValueError, "argument 'estimator'='reinmax' requires hard=True"),
        (dict(hard=True, estimator="ReinMax"), ValueError, "argument 'estimator' must be one of 'st', 'reinmax'"),
        (dict(hard=True, estimator=None), TypeError, "argument 'estimator' must be str, not NoneType"),
        (dict(hard=True, estimator="gumbel_rao", rao_samples=0), ValueError, "argument 'rao_samples' must be a pos"),
        (dict(hard=True, rao_samples=2.0), TypeError, "argument 'rao_samples' must be int, not float"),
    ],
)
def test_bad_estimator_arguments(kwargs, error, match):
    with pytest.raises(error, match=f"gumbel_softmax\\(\\): {match}"):
        gumbel_softmax(torch.randn(3, 4), **kwargs)


@pytest.mark.parametrize("backend_call", ["fwd", "bwd"])
def test_ops_check_the_estimator_themselves(backend_call):
    # Whoever calls the ops (not only gumbel_softmax) gets the same ValueErrors from the C++ kernels.
    x, (seed, tau) = torch.randn(2, 5, 1), as_tensors(1, 1.0, "cpu")
    call = {
        "fwd": lambda hard, *args: OPS.gumbel_softmax_fwd(x, seed, tau, hard, 1, *args),
        "bwd": lambda hard, *args: OPS.gumbel_softmax_bwd(x, x, seed, tau, hard, 1, *args),
    }[backend_call]
    with pytest.raises(ValueError, match="unknown estimator 'rein'"):
        call(True, "rein", 10)
    with pytest.raises(ValueError, match="estimator 'gst' requires hard=True"):
        call(False, "gst", 10)
    with pytest.raises(ValueError, match="rao_samples must be a positive integer"):
        call(True, "gumbel_rao", -1)


@pytest.mark.parametrize("estimator", HARD_ESTIMATORS)
@pytest.mark.parametrize("category", [-1, 5])
def test_the_cpu_backward_refuses_a_sample_outside_the_categories(estimator, category):
    # The forward's argmax is always a category; a direct call's sample indexes the kernel's noise words, so
    # the C++ backward checks it (IndexError) rather than read past them.
    if _cpu.load_cpu_kernels() is None:
        pytest.skip("the C++ kernels are not available on this machine")
    x, (seed, tau) = torch.randn(20, 5, 1), as_tensors(1, 1.0, "cpu")
    sample = torch.zeros(20, 1, 1, dtype=torch.int64)
    sample[13] = category
    with pytest.raises(IndexError, match=f"sample {category} is not a category of 5"):
        OPS.gumbel_softmax_bwd(x, x, seed, tau, True, 1, estimator, 3, sample)


def _fixed_noise(estimator: str, tau: float = 0.8, rao_samples: int = 3):
    """``sample(x)``: the hard sample with one seed on every call, and ``estimator``'s gradient."""
    generator = torch.Generator()

    def sample(x):
        generator.manual_seed(11)
        return gumbel_softmax(x, tau, True, generator=generator, estimator=estimator, rao_samples=rao_samples)

    return sample


@pytest.mark.parametrize("estimator", HARD_ESTIMATORS)
def test_double_backward_is_the_derivative_of_the_estimator(estimator):
    # A backward with create_graph runs the reference's formula in differentiable torch ops (the sample held
    # fixed): gradgradcheck holds its derivatives in x and in the incoming gradient to finite differences.
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(_fixed_noise(estimator), (x,))
    # and the first derivative of that path is the backward kernel's.
    w = torch.randn(4, 6, dtype=torch.float64)
    (with_graph,) = torch.autograd.grad((_fixed_noise(estimator)(x) * w).sum(), x, create_graph=True)
    (plain,) = torch.autograd.grad((_fixed_noise(estimator)(x) * w).sum(), x)
    torch.testing.assert_close(with_graph, plain)


@pytest.mark.parametrize("estimator", HARD_ESTIMATORS)
def test_forward_mode_is_the_backward_fed_the_tangent(estimator):
    # Every estimator's matrix is symmetric (sums of softmax Jacobians diag(p) - p p^T), so its JVP is its VJP.
    x, v = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    sample = _fixed_noise(estimator)
    _, tangent = torch.func.jvp(sample, (x,), (v,))
    (vjp,) = torch.func.vjp(sample, x)[1](v)
    torch.testing.assert_close(tangent, vjp)
    assert tangent.abs().max() > 1e-3
    torch.testing.assert_close(torch.func.grad(lambda x: (sample(x) * v).sum())(x), vjp)


@pytest.mark.parametrize("estimator", HARD_ESTIMATORS)
def test_the_eager_function_keeps_the_category_its_forward_recorded(monkeypatch, estimator):
    # Forward-mode AD takes the eager Function on every device. Its forward records each row's category in the
    # pass that samples (GumbelSoftmaxRules.eager_forward), so nothing scans the one-hot for it, and the tangent
    # is the plain backward's gradient fed the tangent (the Jacobian is symmetric), the backward of the C++ node.
    x, v = torch.randn(6, 9, dtype=torch.float64), torch.randn(6, 9, dtype=torch.float64)

    def sample(logits):
        return gumbel_softmax(logits, 0.7, hard=True, estimator=estimator, generator=torch.Generator().manual_seed(5))

    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad((sample(leaf) * v).sum(), leaf)

    def no_scan(*args):
        raise AssertionError("the forward recorded the category; nothing should scan the one-hot for it")

    monkeypatch.setattr(gumbel_fused._ops.gumbel_softmax, "sample_index", no_scan)
    with torch.autograd.forward_ad.dual_level():
        y, tangent = torch.autograd.forward_ad.unpack_dual(sample(torch.autograd.forward_ad.make_dual(x, v)))
    assert torch.equal(y, sample(x))
    torch.testing.assert_close(tangent, expected)
    assert tangent.abs().max() > 1e-3


@pytest.mark.parametrize("estimator", HARD_ESTIMATORS)
def test_vmap_of_grad_is_per_sample(estimator):
    xs, w = torch.randn(3, 4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)

    def grad_of(x):
        return torch.func.grad(lambda x: (_fixed_noise(estimator)(x) * w).sum())(x)

    batched = torch.func.vmap(grad_of, randomness="same")(xs)
    for b in range(xs.shape[0]):
        torch.testing.assert_close(batched[b], grad_of(xs[b]))


def test_a_learnable_tau_needs_st():
    tau = torch.tensor(0.7, requires_grad=True)
    with pytest.raises(ValueError, match="argument 'estimator'='reinmax' defines no gradient in tau"):
        gumbel_softmax(torch.randn(3, 4), tau, True, estimator="reinmax")
    assert gumbel_softmax(torch.randn(3, 4), tau.detach(), True, estimator="reinmax").shape == (3, 4)
    # Reached without the public function's check, the autograd rule says the same.
    x = torch.randn(3, 4, requires_grad=True)
    y = gumbel_fused._ops.gumbel_softmax.gumbel_softmax(x, torch.tensor(5), tau, True, 1, "gst", 10)
    with pytest.raises(NotImplementedError, match="estimator='gst' defines no derivative in tau"):
        y.sum().backward()
