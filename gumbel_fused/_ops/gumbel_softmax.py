"""The ``gumbel_fused::gumbel_softmax_fwd`` / ``gumbel_softmax_bwd`` ops, their fakes, and the autograd rules
that make :func:`gumbel_softmax` (forward op + backward op) differentiable in every mode.

Both ops take tensors in the caller's shape with the categories on ``dim`` (the kernels see their
``(outer, K, inner)`` views, see ``_dispatch.define_op``) and return a tensor of that shape. ``seed`` is a 0-dim
int64 tensor on the logits' device and ``tau`` a 0-dim floating tensor (a float graph argument would be specialized
by torch.compile, so annealing tau would recompile until the recompile limit); on the direct path ``tau`` may be a
Python float and a CUDA ``seed`` a Python int (``_ops/seed.py``).

Derivatives, with z = (x + g) / tau, y = softmax(z) over ``dim`` and J = (diag(y) - y y^T) / tau the
(symmetric) Jacobian of y in x. Hard mode is straight-through: every derivative is the soft sample's.

* VJP in x: J grad = y * (grad - sum(grad * y)) / tau: the backward op.
* JVP in x: J dx, the same formula (J is symmetric): the backward op again, fed the tangent.
* tau: dz/dtau = -z / tau, and since z = log y + logsumexp(z) and sum(J-rows) = 0, the logsumexp drops
  out: dy/dtau = -(y log y - y * sum(y log y)) / tau. It needs y but not the noise.

``estimator`` (a name in ``reference.estimators.ESTIMATORS``) and ``rao_samples`` pick hard mode's gradient in
x: "st" is the straight-through gradient above; the others (ReinMax, Gumbel-Rao, GST, plain ST) replace J by
their own matrix, the backward op computing its product with the gradient. Each of those matrices is
symmetric (a sum of softmax Jacobians diag(p) - p p^T, ReinMax's too), so their JVP is the backward op fed
the tangent, as for J. They define no derivative in tau. The forward kernels only check the two arguments.
"""

from __future__ import annotations

import math

import torch

from ..reference.estimators import estimator_grad_ref, sample_index_ref
from ..reference.gumbel_softmax import gumbel_softmax_bwd_ref, gumbel_softmax_fwd_ref
from ..reference.rng import math_dtype
from ._autograd import differentiable, save_values, saved_values
from ._dispatch import LIBRARY, define_op

# Forward: sample softmax((logits + g) / tau) over dim 1 (the exact one-hot of its argmax when hard).
gumbel_softmax_fwd = define_op(
    "gumbel_softmax_fwd(Tensor logits, Tensor seed, Tensor tau, bool hard, int dim=1, str estimator=\"st\", "
    "int rao_samples=10) -> Tensor",
    gumbel_softmax_fwd_ref,
    cpp="fwd",
    triton="gumbel_softmax.gumbel_softmax_fwd",
    temperature="tau",
    rowwise=("logits",),
    cpp_with_grad="fwd_with_grad",
)
# Backward: y * (grad - sum(grad * y)) / tau over dim 1, with y = saved, or regenerated from
# saved = the logits when recompute; or another estimator's gradient of the hard sample.
gumbel_softmax_bwd = define_op(
    "gumbel_softmax_bwd(Tensor grad, Tensor saved, Tensor seed, Tensor tau, bool recompute, int dim=1, "
    "str estimator=\"st\", int rao_samples=10, Tensor? sample=None) -> Tensor",
    gumbel_softmax_bwd_ref,
    cpp="bwd",
    triton="gumbel_softmax.gumbel_softmax_bwd",
    temperature="tau",
    rowwise=("grad", "saved", "sample"),
)


# The category of each row of a hard sample (the index of its one), int64 with 1 on dim: what the estimators'
# backward takes, where the forward kernel did not record it (see GumbelSoftmaxRules.eager_forward: under
# torch.compile and torch.func). A scan of the one-hot in C++; on CUDA, torch.argmax (the reference).
sample_index = define_op(
    "sample_index(Tensor one_hot, int dim=1) -> Tensor",
    sample_index_ref,
    cpp="sample_index",
    triton=None,
    rowwise=("one_hot",),
)


@torch.library.register_fake("gumbel_fused::gumbel_softmax_fwd", lib=LIBRARY)
def _(logits, seed, tau, hard, dim=1, estimator="st", rao_samples=10):
    return logits.new_empty(logits.shape)


@torch.library.register_fake("gumbel_fused::gumbel_softmax_bwd", lib=LIBRARY)
def _(grad, saved, seed, tau, recompute, dim=1, estimator="st", rao_samples=10, sample=None):
    return saved.new_empty(saved.shape)


@torch.library.register_fake("gumbel_fused::sample_index", lib=LIBRARY)
def _(one_hot, dim=1):
    return one_hot.new_empty((*one_hot.shape[:dim], 1, *one_hot.shape[dim + 1 :]), dtype=torch.int64)


def _soft_sample(saved: torch.Tensor, seed, tau, hard: bool, dim: int) -> torch.Tensor:
    """y: the saved output in soft mode; regenerated from the logits and seed in hard mode (differentiably)."""
    return gumbel_softmax(saved, seed, tau, False, dim) if hard else saved


def _softmax_vjp(grad: torch.Tensor, saved: torch.Tensor, seed, tau, hard: bool, dim: int) -> torch.Tensor:
    """J grad = y * (grad - sum(grad * y)) / tau: the backward op, or, when the result must itself be
    differentiable (a backward with create_graph, nested torch.func transforms), the same formula in
    differentiable torch ops, whose own derivatives then follow to any order."""
    if not (torch.is_grad_enabled() and torch._C._any_requires_grad(grad, saved, tau)):
        return gumbel_softmax_bwd(grad, saved, seed, tau, hard, dim)
    mdt = math_dtype(saved.dtype)
    y, grad = _soft_sample(saved, seed, tau, hard, dim).to(mdt), grad.to(mdt)
    return (y * (grad - (grad * y).sum(dim, keepdim=True)) / tau).to(saved.dtype)


def _estimator_vjp(grad: torch.Tensor, logits: torch.Tensor, sample: torch.Tensor, seed: torch.Tensor, tau,
                   dim: int, estimator: str, rao_samples: int) -> torch.Tensor:
    """The gradient in x of ``estimator`` (not "st") for the hard sample of category ``sample``: the backward
    op, or, when the result must itself be differentiable, the reference's formula in differentiable torch ops
    on the ``(outer, K, inner)`` view (the sample a constant there)."""
    if not (torch.is_grad_enabled() and torch._C._any_requires_grad(grad, logits, tau)):
        return gumbel_softmax_bwd(grad, logits, seed, tau, True, dim, estimator, rao_samples, sample)
    shape = logits.shape
    outer, inner = math.prod(shape[:dim]), math.prod(shape[dim + 1 :])
    view = (outer, shape[dim], inner)
    dx = estimator_grad_ref(
        grad.reshape(view), logits.reshape(view), sample.reshape(outer, 1, inner), seed, tau, estimator, rao_samples
    )
    return dx.to(logits.dtype).reshape(shape)


def vjp_in_logits(grad: torch.Tensor, saved: torch.Tensor, seed, tau, hard: bool, dim: int, estimator: str,
                  rao_samples: int, sample: torch.Tensor | None) -> torch.Tensor:
    """The gradient in the logits of the forward call whose ``saved`` tensor (see ``GumbelSoftmaxRules``) is
    given, differentiable when it must be. The C++ autograd node of eager CPU calls (csrc/autograd.cpp) calls it
    for every backward that is not plain eager (create_graph, batched grads, transforms, modes)."""
    if estimator == "st":
        return _softmax_vjp(grad, saved, seed, tau, hard, dim)
    return _estimator_vjp(grad, saved, sample, seed, tau, dim, estimator, rao_samples)


def _temperature_sensitivity(y: torch.Tensor, dim: int) -> torch.Tensor:
    """-tau * dy/dtau = y log y - y * sum(y log y) over ``dim``, in the math dtype (0 log 0 = 0)."""
    y = y.to(math_dtype(y.dtype))
    y_log_y = torch.xlogy(y, y)
    return y_log_y - y * y_log_y.sum(dim, keepdim=True)


class GumbelSoftmaxRules:
    """Autograd of ``gumbel_softmax_fwd(logits, seed, tau, hard, dim, estimator, rao_samples)``: gradients for
    logits and a tensor tau."""

    @staticmethod
    def eager_forward(ctx, op, args):
        """The forward of the eager Function (see ``_autograd``). The hard forward of an estimator other than "st"
        records each row's category in its own pass (``ctx.recorded_sample``), where ``setup_context`` would scan
        the one-hot for it, on CUDA a launch of its own (the CPU's C++ node records it too, csrc/autograd.cpp)."""
        _logits, _seed, _tau, _hard, _dim, estimator, _rao_samples = args
        if estimator == "st":
            return op.direct(*args)
        output, ctx.recorded_sample = op.direct(*args, record_sample=True)
        return output

    @staticmethod
    def setup_context(ctx, inputs, output):
        logits, seed, tau, hard, dim, ctx.estimator, ctx.rao_samples = inputs
        # Soft mode: y is the output, so keep it. Hard mode: the output is a one-hot, and keeping y too
        # would be a second full-size tensor; regenerate y (or what the estimator needs: softmaxes of the
        # logits, its own noise) from (logits, seed) when needed instead. An estimator other than "st" also
        # keeps the sampled category, a per-row int64 (1 on dim): its backward then need not draw the
        # sample's noise again, and uses exactly the forward's category.
        ctx.hard, ctx.dim = hard, dim
        sample = None
        if ctx.estimator != "st":
            sample = getattr(ctx, "recorded_sample", None)
            if sample is None:
                sample = sample_index(output, dim)
            else:
                del ctx.recorded_sample  # kept through save_values only, so saved-tensor hooks see it
        save_values(ctx, logits if hard else output, seed, tau, sample)

    @staticmethod
    def _vjp_in_logits(ctx, grad, saved, seed, tau, sample):
        return vjp_in_logits(grad, saved, seed, tau, ctx.hard, ctx.dim, ctx.estimator, ctx.rao_samples, sample)

    @staticmethod
    def _check_temperature_derivative(ctx):
        if ctx.estimator != "st":
            raise NotImplementedError(
                f"gumbel_softmax: estimator={ctx.estimator!r} defines no derivative in tau (only 'st' does, the soft "
                "sample's); pass tau as a number or a tensor that does not require grad"
            )

    @staticmethod
    def backward(ctx, grad):
        saved, seed, tau, sample = saved_values(ctx)
        d_logits = d_tau = None
        if ctx.needs_input_grad[0]:
            d_logits = GumbelSoftmaxRules._vjp_in_logits(ctx, grad, saved, seed, tau, sample)
        if ctx.needs_input_grad[2]:
            GumbelSoftmaxRules._check_temperature_derivative(ctx)
            sensitivity = _temperature_sensitivity(_soft_sample(saved, seed, tau, ctx.hard, ctx.dim), ctx.dim)
            d_tau = -(grad.to(sensitivity.dtype) * sensitivity).sum() / tau
            d_tau = d_tau.to(tau.device, tau.dtype).reshape(tau.shape)
        return d_logits, None, d_tau, None, None, None, None

    @staticmethod
    def jvp(ctx, d_logits, _d_seed, d_tau, _d_hard, _d_dim, _d_estimator, _d_rao_samples):
        saved, seed, tau, sample = saved_values(ctx)
        tangent = None
        if d_logits is not None:
            # Symmetric: the JVP is the VJP.
            tangent = GumbelSoftmaxRules._vjp_in_logits(ctx, d_logits, saved, seed, tau, sample)
        if d_tau is not None:
            GumbelSoftmaxRules._check_temperature_derivative(ctx)
            sensitivity = _temperature_sensitivity(_soft_sample(saved, seed, tau, ctx.hard, ctx.dim), ctx.dim)
            from_tau = (-sensitivity * (d_tau.reshape(()) / tau)).to(saved.dtype)
            tangent = from_tau if tangent is None else tangent + from_tau
        return tangent


# The differentiable forward: gumbel_softmax(logits, seed, tau, hard, dim, estimator, rao_samples).
gumbel_softmax = differentiable(gumbel_softmax_fwd, GumbelSoftmaxRules)
