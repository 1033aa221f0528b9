// Python bindings of the CPU backend (a plain pybind11 module: one call costs ~1 us, less than a
// dispatcher op; gumbel_fused/_ops/_dispatch.py calls these as the ops' CPU kernels).
// One m.def per entry point of kernels.h; an op's kernels live in their own csrc/<op>.cpp, which the
// loader (gumbel_fused/_cpu.py) compiles with every other .cpp in this folder.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>
#include <torch/extension.h>

#include <limits>
#include <mutex>
#include <optional>
#include <tuple>
#include <variant>

#include "kernels.h"
#include "rowwise.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace gumbel_fused;
  m.doc() = "gumbel_fused C++ CPU kernels (fused Philox Gumbel-softmax forward and backward, sampling)";
  // Tensors come in the caller's shape with the categories on `dim` (1 by default: an (outer, K, inner) view
  // as it is); rowwise.h makes the kernels' views. The kernels release the GIL: they run for up to seconds
  // on large inputs, in at::parallel_for.
  // With record_sample (hard only), the pair (sample, each row's category) from the same pass, the category with 1
  // on dim: what the estimators' backward takes (gumbel_fused/_ops/gumbel_softmax.py, eager_forward).
  m.def(
      "fwd",
      [](const at::Tensor& logits, int64_t seed, double tau, bool hard, int64_t dim,
         const std::string& estimator, int64_t rao_samples,
         bool record_sample) -> std::variant<at::Tensor, std::tuple<at::Tensor, at::Tensor>> {
        if (!record_sample) return gumbel_softmax_fwd(logits, seed, tau, hard, dim, estimator, rao_samples);
        at::Tensor category;
        auto y = gumbel_softmax_fwd(logits, seed, tau, hard, dim, estimator, rao_samples, &category);
        return std::make_tuple(std::move(y), std::move(category));
      },
      "forward, softmax over dim", py::arg("logits"), py::arg("seed"), py::arg("tau"), py::arg("hard"),
      py::arg("dim") = 1, py::arg("estimator") = "st", py::arg("rao_samples") = 10, py::kw_only(),
      py::arg("record_sample") = false, py::call_guard<py::gil_scoped_release>());
  m.def("bwd", &gumbel_softmax_bwd, "backward of grad and saved, softmax over dim", py::arg("grad"),
        py::arg("saved"), py::arg("seed"), py::arg("tau"), py::arg("recompute"), py::arg("dim") = 1,
        py::arg("estimator") = "st", py::arg("rao_samples") = 10, py::arg("sample") = py::none(),
        py::call_guard<py::gil_scoped_release>());
  m.def("fwd_with_grad", &gumbel_softmax_with_grad,
        "forward with its autograd node (eager calls whose logits require grad, float tau)", py::arg("logits"),
        py::arg("seed"), py::arg("tau"), py::arg("hard"), py::arg("dim") = 1, py::arg("estimator") = "st",
        py::arg("rao_samples") = 10, py::call_guard<py::gil_scoped_release>());
  m.def("sample_index", &sample_index, "the category of each row of a one-hot over dim", py::arg("one_hot"),
        py::arg("dim") = 1, py::call_guard<py::gil_scoped_release>());
  m.def(
      "gumbel_max",
      [](const at::Tensor& logits, int64_t seed, double temperature, int64_t dim) {
        return caller_view(gumbel_max_cpu(rows_view(logits, dim), seed, temperature), logits.sizes(), dim);
      },
      "one draw over dim", py::arg("logits"), py::arg("seed"), py::arg("temperature"), py::arg("dim") = 1,
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "gumbel_topk",
      [](const at::Tensor& logits, int64_t seed, double temperature, int64_t k, int64_t dim) {
        return caller_view(gumbel_topk_cpu(rows_view(logits, dim), seed, temperature, k), logits.sizes(), dim);
      },
      "k ordered draws without replacement over dim", py::arg("logits"), py::arg("seed"), py::arg("temperature"),
      py::arg("k"), py::arg("dim") = 1, py::call_guard<py::gil_scoped_release>());
  // A seed from a CPU generator (the default one for None): the value torch.randint(2**63 - 1, (),
  // generator=generator) gives, by the same draw its kernel makes (ATen's uniform_int_from_to_distribution under
  // the generator's lock), as a Python int: no tensor, no dispatcher, nothing for the autograd node to save. Against
  // a 0-dim tensor from at::randint: 2.7-3.1 us off a no-grad forward and 10-12 us off a forward + backward at the
  // VAE's size, 1 or 2 threads (the 2-core Zen 4 VM, in one process).
  m.def(
      "seed",
      [](const std::optional<at::Generator>& generator) {
        auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(generator, at::detail::getDefaultCPUGenerator());
        std::lock_guard<std::mutex> lock(gen->mutex_);
        return at::uniform_int_from_to_distribution<int64_t>(std::numeric_limits<int64_t>::max(), 0)(gen);
      },
      "a seed from a CPU generator, as torch.randint(2**63 - 1, ()) draws it", py::arg("generator") = py::none());
}
