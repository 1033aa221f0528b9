// The autograd node of gumbel_fused::gumbel_softmax_fwd for eager CPU calls, in C++.
//
// Why in C++: at the VAE's size (100, 20, 10) the kernels of a forward + backward take 70-80 us on 2 threads,
// and the same rules as a Python autograd.Function (gumbel_fused/_ops/gumbel_softmax.py) added 16-65 us around
// them (the 2-core Zen 4 VM, 1 or 2 threads, back to back or between eager calls): the Function's apply and
// context, the engine's call back into Python, the backward's own Python. This node is those rules for the
// common call only: CPU logits, the C++ kernels available, a first-order backward in logits with a float tau.
// The Python rules serve every other call (a tau that requires grad, forward mode, torch.func, torch.compile,
// CUDA, no compiler), and every backward that is not plain eager, which this node hands to them.
#include <ATen/PythonTorchFunctionTLS.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/extension.h>

#include <string>

#include "rowwise.h"

namespace gumbel_fused {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Whether the backward may call the kernel directly, where the Python rules would (their plain-eager test,
// gumbel_fused/_ops/_dispatch.runs_plain_eager): no graph to build (create_graph), a plain CPU gradient with
// storage (not vmap's batched one, which torch.autograd.grad(..., is_grads_batched=True) passes, nor a tensor
// subclass or a torch.func wrapper), no torch.func transform, and no dispatch or torch-function mode to see the op.
bool plain_eager_backward(const at::Tensor& grad) {
  constexpr c10::DispatchKeySet kWrapped({c10::DispatchKey::Python, c10::DispatchKey::Batched,
                                          c10::DispatchKey::FuncTorchBatched, c10::DispatchKey::FuncTorchGradWrapper});
  return !at::GradMode::is_enabled() && grad.has_storage() && grad.is_cpu() && !grad.key_set().has_any(kWrapped) &&
         !c10::impl::tls_is_dispatch_key_included(c10::DispatchKey::FuncTorchDynamicLayerFrontMode) &&
         !c10::impl::dispatch_mode_enabled() && !at::impl::torch_function_mode_enabled();
}

class GumbelSoftmaxNode : public torch::autograd::Function<GumbelSoftmaxNode> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits, int64_t seed, double tau,
                            bool hard, int64_t dim, const std::string& estimator, int64_t rao_samples) {
    // What the Python rules keep (GumbelSoftmaxRules.setup_context): y in soft mode; the logits in hard mode,
    // from which the backward regenerates y; and for an estimator other than "st", the sampled category, which
    // the forward kernel records as it samples (as in the rules' eager Function; their ways through the dispatcher
    // scan the one-hot for it: sample_index).
    at::Tensor sample;
    const at::Tensor y =
        gumbel_softmax_fwd(logits, seed, tau, hard, dim, estimator, rao_samples, estimator == "st" ? nullptr : &sample);
    ctx->save_for_backward({hard ? logits : y, sample});
    ctx->saved_data["seed"] = seed;
    ctx->saved_data["tau"] = tau;
    ctx->saved_data["hard"] = hard;
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["estimator"] = estimator;
    ctx->saved_data["rao_samples"] = rao_samples;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved_tensors = ctx->get_saved_variables();
    const at::Tensor &saved = saved_tensors[0], &sample = saved_tensors[1];
    const int64_t seed = ctx->saved_data["seed"].toInt();
    const double tau = ctx->saved_data["tau"].toDouble();
    const bool hard = ctx->saved_data["hard"].toBool();
    const int64_t dim = ctx->saved_data["dim"].toInt();
    const std::string estimator = ctx->saved_data["estimator"].toStringRef();
    const int64_t rao_samples = ctx->saved_data["rao_samples"].toInt();
    const std::optional<at::Tensor> sample_arg = sample.defined() ? std::optional<at::Tensor>(sample) : std::nullopt;
    at::Tensor d_logits;
    if (plain_eager_backward(grads[0])) {
      // "st" is the soft sample's gradient, from y (soft) or the logits (hard); the other estimators' backward
      // always takes the logits, in hard mode (recompute = true).
      d_logits = gumbel_softmax_bwd(grads[0], saved, seed, tau, hard, dim, estimator, rao_samples, sample_arg);
    } else {
      // The Python rules: differentiable torch formulas under create_graph, the op through the dispatcher under a
      // transform or mode. CppNode::apply holds this node's mutex here, and the GIL is taken under it; no code
      // takes the two the other way round (Python never locks a node).
      pybind11::gil_scoped_acquire gil;
      d_logits = pybind11::module_::import("gumbel_fused._ops.gumbel_softmax")
                     .attr("vjp_in_logits")(grads[0], saved, seed, tau, hard, dim, estimator, rao_samples, sample_arg)
                     .cast<at::Tensor>();
    }
    return {d_logits, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor gumbel_softmax_with_grad(const at::Tensor& logits, int64_t seed, double tau, bool hard,
                                    int64_t dim, const std::string& estimator, int64_t rao_samples) {
  return GumbelSoftmaxNode::apply(logits, seed, tau, hard, dim, estimator, rao_samples);
}

}  // namespace gumbel_fused
