"""Test helpers: backends under a common signature, the eager formula, a verbose allclose, a dispatch-mode
recorder of ops, and the benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gumbel_fused._ops import gumbel_max as max_ops
from gumbel_fused._ops import gumbel_softmax as ops
from gumbel_fused._ops import gumbel_topk as topk_ops
from gumbel_fused._triton import gumbel_max as triton_max
from gumbel_fused._triton import gumbel_softmax as triton_kernels
from gumbel_fused._triton import gumbel_topk as triton_topk
from gumbel_fused.reference import (
    gumbel_from_uniform_ref,
    gumbel_max_ref,
    gumbel_softmax_bwd_ref,
    gumbel_softmax_fwd_ref,
    gumbel_topk_ref,
    math_dtype,
    uniform_from_words_ref,
    uniform_ref,
)

from .conftest import TRITON_DEVICE

BACKENDS = ["reference", "cpu", "triton"]

# Tolerances, one table per comparison, by dtype:
# - KERNEL_TOL (atol, rtol): a kernel against the reference on the same problem. The noise's logs differ by
#   about 1 ulp between backends (Cephes in C++, libdevice in Triton, torch's in the reference; |g| <= 21.5),
#   so fp32 agrees to a few ulp of the output, half types to one ulp.
# - KERNEL_TOL[dtype][0] is also the slack over twice eager's own error when both are held to fp64 truth
#   (tests/test_exact.py).
# - PUBLIC_TOL (atol = rtol): the public function against the reference in tests/test_fuzz.py, over any
#   shape, dim and strides that hypothesis draws, forward and backward: looser than KERNEL_TOL.
KERNEL_TOL = {
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (8e-3, 8e-3),
    torch.float32: (2e-6, 2e-5),
    torch.float64: (1e-12, 1e-12),
}
PUBLIC_TOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5, torch.float64: 1e-10}


def as_tensors(seed: int, tau: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(seed, dtype=torch.int64, device=device),
        torch.tensor(tau, dtype=torch.float64, device=device),
    )


def run_fwd(backend: str, logits3d: torch.Tensor, seed: int, tau: float, hard: bool) -> torch.Tensor:
    """Forward of one backend on ``(outer, K, inner)`` logits; the result comes back on the CPU."""
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    x = logits3d.to(device)
    s, t = as_tensors(seed, tau, device)
    if backend == "reference":
        return gumbel_softmax_fwd_ref(x, s, t, hard)
    if backend == "cpu":
        return ops.gumbel_softmax_fwd(x, s, t, hard)
    return triton_kernels.gumbel_softmax_fwd(x, s, t, hard).cpu()


def run_bwd(
    backend: str, grad, saved, seed: int, tau: float, recompute: bool, estimator: str = "st", rao_samples: int = 10
) -> torch.Tensor:
    """Backward of one backend (``saved``: the logits when ``recompute``, else y); the result comes back on the CPU.

    Estimators other than "st" get the reference forward's category (``forward_sample``), the same for every
    backend."""
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    sample = forward_sample(saved, seed, tau).to(device) if estimator != "st" else None
    grad, saved = grad.to(device), saved.to(device)
    s, t = as_tensors(seed, tau, device)
    args = (estimator, rao_samples, sample)
    if backend == "reference":
        return gumbel_softmax_bwd_ref(grad, saved, s, t, recompute, *args)
    if backend == "cpu":
        return ops.gumbel_softmax_bwd(grad, saved, s, t, recompute, 1, *args)
    return triton_kernels.gumbel_softmax_bwd(grad, saved, s, t, recompute, *args).cpu()


def forward_sample(logits3d: torch.Tensor, seed: int, tau: float) -> torch.Tensor:
    """The hard sample's category a row, int64 ``(outer, 1, inner)``: what the autograd keeps for an estimator."""
    return gumbel_softmax_fwd_ref(logits3d, *as_tensors(seed, tau, "cpu"), True).argmax(dim=1, keepdim=True)


def run_gumbel_max(backend: str, logits3d: torch.Tensor, seed: int, temperature: float) -> torch.Tensor:
    """``gumbel_max`` of one backend on ``(outer, K, inner)`` logits: int64 ``(outer, inner)`` on the CPU."""
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    x = logits3d.to(device)
    s, t = as_tensors(seed, temperature, device)
    kernel = {"reference": gumbel_max_ref, "cpu": max_ops.gumbel_max, "triton": triton_max.gumbel_max}[backend]
    return kernel(x, s, t).cpu()


def run_gumbel_topk(backend: str, logits3d: torch.Tensor, seed: int, temperature: float, k: int) -> torch.Tensor:
    """``gumbel_topk`` of one backend on ``(outer, K, inner)`` logits: int64 ``(outer, k, inner)`` on the CPU."""
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    x = logits3d.to(device)
    s, t = as_tensors(seed, temperature, device)
    kernel = {"reference": gumbel_topk_ref, "cpu": topk_ops.gumbel_topk, "triton": triton_topk.gumbel_topk}[backend]
    return kernel(x, s, t, k).cpu()


def eager_soft(logits3d: torch.Tensor, seed: int, tau: float, dtype: torch.dtype) -> torch.Tensor:
    """The eager formula ``softmax((logits + g) / tau)`` computed in ``dtype``, fed the contract's
    uniforms: what ``F.gumbel_softmax`` computes, with our noise instead of ``exponential_``."""
    outer, n_cols, inner = logits3d.shape
    g = gumbel_from_uniform_ref(uniform_ref(seed, outer, n_cols, inner), math_dtype(dtype))
    return torch.softmax((logits3d.to(dtype) + g.to(dtype)) / tau, dim=1)


def assert_close_verbose(actual, expected, *, atol: float, rtol: float = 0.0, msg: str = "") -> None:
    """allclose that reports the first mismatches, and NaN/inf disagreements separately."""
    actual, expected = actual.double(), expected.double()
    nan_mismatch = torch.isnan(actual) != torch.isnan(expected)
    assert not nan_mismatch.any(), f"{msg}: NaN in different places at {nan_mismatch.nonzero()[:5].tolist()}"
    finite = torch.isfinite(expected)
    inf_mismatch = ~finite & ~torch.isnan(expected) & (actual != expected)
    assert not inf_mismatch.any(), f"{msg}: inf disagreements at {inf_mismatch.nonzero()[:5].tolist()}"
    err = (actual - expected).abs().nan_to_num(0.0)
    bad = err > atol + rtol * expected.abs().nan_to_num(0.0)
    if bad.any():
        idx = bad.nonzero()[:5]
        rows = [f"  at {i}: got {actual[i].item():.8g}, want {expected[i].item():.8g}"
            for i in map(tuple, idx.tolist())]
        raise AssertionError(
            f"{msg}: {int(bad.sum())} of {bad.numel()} elements differ (max abs err {err.max().item():.3g}, "
            f"atol {atol:g}, rtol {rtol:g})\n" + "\n".join(rows)
        )


def golden_gumbel(rng_golden: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Every uniform of the golden file (its rows, then its edge words) and the fp64 Gumbel value it maps to."""
    rows = [row for case in rng_golden["cases"] for row in case["rows"]]
    edges = rng_golden["word_to_gumbel"]
    u = torch.cat(
        [
            torch.tensor([x for row in rows for x in row["u"]]),
            uniform_from_words_ref(torch.tensor([int(w, 16) for w in edges])),
        ]
    )
    want = torch.tensor([x for row in rows for x in row["g"]] + list(edges.values()), dtype=torch.float64)
    return u, want


class RecordOps(TorchDispatchMode):
    """Records the ops that reach the dispatcher; its presence alone forces the registered-op path."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark_script(name: str):
    """``benchmarks/<name>.py`` imported as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
