// Python bindings of the CPU backend (a plain pybind11 module: one call costs ~1 us, less than a
// dispatcher op; the op layer in gumbel_fused/_ops.py registers these as the ops' CPU kernels).
// One m.def per entry point of kernels.h; an op's kernels live in their own csrc/<op>.cpp, which the
// loader (gumbel_fused/_cpu.py) compiles with every other .cpp in this folder.
#include <torch/extension.h>

#include "kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gumbel_fused C++ CPU kernels (fused Philox Gumbel-softmax forward and backward, sampling)";
  // The kernels release the GIL: they run for up to seconds on large inputs, in at::parallel_for.
  m.def("fwd", &gumbel_fused::gumbel_softmax_fwd_cpu, "forward on (outer, K, inner) logits",
        py::arg("logits"), py::arg("seed"), py::arg("tau"), py::arg("hard"), py::arg("estimator") = "st",
        py::arg("rao_samples") = 10, py::call_guard<py::gil_scoped_release>());
  m.def("bwd", &gumbel_fused::gumbel_softmax_bwd_cpu, "backward on (outer, K, inner) grad and saved",
        py::arg("grad"), py::arg("saved"), py::arg("seed"), py::arg("tau"), py::arg("recompute"),
        py::arg("estimator") = "st", py::arg("rao_samples") = 10, py::arg("sample") = py::none(),
        py::call_guard<py::gil_scoped_release>());
  m.def("gumbel_max", &gumbel_fused::gumbel_max_cpu, "one draw a row of (outer, K, inner) logits",
        py::arg("logits"), py::arg("seed"), py::arg("temperature"), py::call_guard<py::gil_scoped_release>());
  m.def("gumbel_topk", &gumbel_fused::gumbel_topk_cpu, "k ordered draws without replacement a row",
        py::arg("logits"), py::arg("seed"), py::arg("temperature"), py::arg("k"),
        py::call_guard<py::gil_scoped_release>());
}
