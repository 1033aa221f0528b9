"""The C++ autograd node of eager CPU training calls (csrc/autograd.cpp) against the Python rules it stands in for.

The node must be invisible but for its speed: the same sample, the same gradient bit for bit, the same errors,
and any backward with create_graph handed to the Python rules, so that higher derivatives still hold.
"""

from __future__ import annotations

import pytest
import torch

from gumbel_fused import _cpu, gumbel_softmax
from gumbel_fused._ops._dispatch import KernelOp
from gumbel_fused.reference.estimators import ESTIMATORS

from ..helpers import RecordOps

pytestmark = pytest.mark.skipif(_cpu.load_cpu_kernels() is None, reason="the C++ kernels are not available")

NODE = "GumbelSoftmaxNode"


def logits(shape=(6, 5, 7), dtype=torch.float32, seed=3):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype).requires_grad_()


def take_python_rules(monkeypatch):
    """From here on, training calls take the Python autograd.Function instead of the C++ node."""
    monkeypatch.setattr(KernelOp, "direct_with_grad", lambda self, *args: None)


def sample_and_grad(x, generator_seed=11, **kwargs):
    """A call with a fixed seed, and its gradient for a fixed upstream gradient."""
    y = gumbel_softmax(x, generator=torch.Generator().manual_seed(generator_seed), **kwargs)
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(5)).to(y.dtype)
    (dx,) = torch.autograd.grad(y, x, upstream)
    return y, dx


def test_training_call_takes_the_node_and_other_calls_do_not():
    x = logits()
    assert NODE in gumbel_softmax(x, 0.5, hard=True).grad_fn.name()
    assert NODE in gumbel_softmax(x.double(), 2.0, dim=0).grad_fn.name()
    tau = torch.tensor(0.5, requires_grad=True)  # a learnable temperature: the rules define its derivative
    assert NODE not in gumbel_softmax(x, tau).grad_fn.name()
    with torch.no_grad():
        assert gumbel_softmax(x).grad_fn is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("dim", [-1, 1, 0])
@pytest.mark.parametrize(("hard", "estimator"), [(False, "st"), *((True, name) for name in ESTIMATORS)])
def test_node_gives_the_python_rules_bits(monkeypatch, dtype, dim, hard, estimator):
    kwargs = {"tau": 0.7, "hard": hard, "dim": dim, "estimator": estimator, "rao_samples": 3}
    x = logits(dtype=dtype)
    y_node, dx_node = sample_and_grad(x, **kwargs)
    assert NODE in y_node.grad_fn.name()
    take_python_rules(monkeypatch)
    y_rules, dx_rules = sample_and_grad(x, **kwargs)
    assert NODE not in y_rules.grad_fn.name()
    assert torch.equal(y_node, y_rules)
    assert torch.equal(dx_node, dx_rules)
    assert dx_node.dtype == dtype and dx_node.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(("shape", "dim"), [((40, 9), -1), ((2, 6, 512), 1), ((3, 4, 16, 16), 1)])
def test_node_records_the_sampled_category_on_every_layout(monkeypatch, dtype, shape, dim):
    """The node takes the estimators' category from the forward kernel (the 16-row tiles, and the channel-first
    tiles of (B, K, H*W) fp32 logits), where the rules scan the one-hot: the same gradient, NaN rows included."""
    x = logits(shape, dtype).detach()
    x.view(-1)[::37] = float("nan")  # some rows hold a NaN: all-NaN one-hots, category 0
    x.requires_grad_()
    kwargs = {"tau": 1.3, "hard": True, "dim": dim, "estimator": "reinmax"}
    y_node, dx_node = sample_and_grad(x, **kwargs)
    assert NODE in y_node.grad_fn.name()
    take_python_rules(monkeypatch)
    y_rules, dx_rules = sample_and_grad(x, **kwargs)
    assert y_node.isnan().any()
    torch.testing.assert_close(y_node, y_rules, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(dx_node, dx_rules, rtol=0, atol=0, equal_nan=True)


def test_second_order_through_the_node():
    """create_graph hands the backward to the Python rules: gradgradcheck holds with a float tau, and hard mode's
    second derivatives are the soft sample's (straight-through)."""
    x = logits((3, 5), torch.float64)
    weight = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))

    def sample(x, hard=False):
        return gumbel_softmax(x, 0.6, hard=hard, generator=torch.Generator().manual_seed(2))

    def hessian_vector(hard):
        y = sample(x, hard)
        assert NODE in y.grad_fn.name()
        (dx,) = torch.autograd.grad((y * weight).sum(), x, create_graph=True)
        return torch.autograd.grad((dx * weight).sum(), x)[0]

    assert torch.autograd.gradcheck(sample, (x,))
    assert torch.autograd.gradgradcheck(sample, (x,))
    torch.testing.assert_close(hessian_vector(hard=True), hessian_vector(hard=False), rtol=0, atol=0)


@pytest.mark.parametrize("estimator", [name for name in ESTIMATORS if name != "st"])
def test_estimator_double_backward_matches_the_python_rules(monkeypatch, estimator):
    x = logits((4, 6), torch.float64)
    weight = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    nodes = []

    def hessian_vector():
        y = gumbel_softmax(x, 1.0, True, generator=torch.Generator().manual_seed(4), estimator=estimator)
        nodes.append(NODE in y.grad_fn.name())
        (dx,) = torch.autograd.grad((y * weight).sum(), x, create_graph=True)
        return torch.autograd.grad((dx * weight).sum(), x, allow_unused=True)[0]

    node = hessian_vector()
    take_python_rules(monkeypatch)
    rules = hessian_vector()
    assert nodes == [True, False]
    assert (node is None) == (rules is None)
    if node is not None:
        torch.testing.assert_close(node, rules, rtol=0, atol=0)


def test_saved_tensor_hooks_and_version_checks_apply():
    x = logits()
    packed = []

    def pack(t):
        packed.append(t.data_ptr())
        return t

    z = x * 1.0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = gumbel_softmax(z, hard=True)
    assert NODE in y.grad_fn.name() and z.data_ptr() in packed  # the logits (hard mode keeps them)

    z = x * 1.0
    y = gumbel_softmax(z, hard=True)
    z.add_(1.0)  # the kept logits changed: the gradient would be wrong
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_backward_twice_needs_retain_graph():
    x = logits()
    y = gumbel_softmax(x, hard=True, estimator="reinmax")
    (first,) = torch.autograd.grad(y.sum(), x, retain_graph=True)
    (second,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(first, second)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        torch.autograd.grad(y.sum(), x)


def test_anomaly_mode_names_the_forward_call():
    """The node records where it was made, as a Python Function's node does, for anomaly mode's report."""
    x = logits()
    with torch.autograd.detect_anomaly(check_nan=False):
        y = gumbel_softmax(x, hard=True)
        assert NODE in y.grad_fn.name()
        stack = y.grad_fn.metadata.get("traceback_")
        (dx,) = torch.autograd.grad(y.sum(), x)
    assert stack is not None and "test_anomaly_mode_names_the_forward_call" in "".join(stack)
    assert dx.isfinite().all()


@pytest.mark.parametrize("node", [True, False])
@pytest.mark.parametrize("estimator", ["st", "reinmax"])
def test_batched_grads_meet_the_op_through_the_dispatcher(monkeypatch, node, estimator):
    """The batched gradient of torch.autograd.grad(..., is_grads_batched=True) has no storage for a kernel to read:
    the node hands it to the Python rules, and they send it through the dispatcher (vmap's loop over the op)."""
    if not node:
        take_python_rules(monkeypatch)
    x = logits()
    y = gumbel_softmax(x, 0.8, hard=True, generator=torch.Generator().manual_seed(1), estimator=estimator)
    assert (NODE in y.grad_fn.name()) == node
    upstream = torch.randn(3, *y.shape, generator=torch.Generator().manual_seed(2))
    (batched,) = torch.autograd.grad(y, x, upstream, is_grads_batched=True, retain_graph=True)
    for i in range(3):
        assert torch.equal(batched[i], torch.autograd.grad(y, x, upstream[i], retain_graph=True)[0])


def test_a_dispatch_mode_sees_the_backward_op():
    x = logits()
    y = gumbel_softmax(x, hard=True)
    assert NODE in y.grad_fn.name()
    with RecordOps() as recorder:
        (dx,) = torch.autograd.grad(y.sum(), x)
    assert "gumbel_fused.gumbel_softmax_bwd.default" in recorder.ops
    assert dx.isfinite().all()


@pytest.mark.parametrize(("hard", "estimator"), [(False, "st"), (True, "st"), (True, "reinmax")])
def test_compiled_autograd_gives_the_same_gradient(hard, estimator):
    """Compiled autograd meets the node in the graph it compiles (the node is not traceable: it runs as it is)."""
    from torch._dynamo import compiled_autograd

    x = logits((6, 5))
    weight = torch.randn(6, 5, generator=torch.Generator().manual_seed(4))

    def loss():
        y = gumbel_softmax(x, 0.7, hard, generator=torch.Generator().manual_seed(3), estimator=estimator)
        assert NODE in y.grad_fn.name()
        return (y * weight).sum()

    (expected,) = torch.autograd.grad(loss(), x)
    with compiled_autograd._enable(torch.compile(backend="eager")):
        loss().backward()
    assert torch.equal(x.grad, expected)
