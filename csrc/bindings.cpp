// Python bindings of the CPU backend (a plain pybind11 module: one call costs ~1 us, less than a
// dispatcher op; the op layer in gumbel_fused/_ops.py registers these as the ops' CPU kernels).
#include <torch/extension.h>

#include "kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gumbel_fused C++ CPU kernels (fused Philox Gumbel-softmax forward and backward)";
  // The kernels release the GIL: they run for up to seconds on large inputs, in at::parallel_for.
  m.def("fwd", &gumbel_fused::gumbel_softmax_fwd_cpu, "forward on (outer, K, inner) logits",
        py::arg("logits"), py::arg("seed"), py::arg("tau"), py::arg("hard"),
        py::call_guard<py::gil_scoped_release>());
  m.def("bwd", &gumbel_fused::gumbel_softmax_bwd_cpu, "backward on (outer, K, inner) grad and saved",
        py::arg("grad"), py::arg("saved"), py::arg("seed"), py::arg("tau"), py::arg("recompute"),
        py::call_guard<py::gil_scoped_release>());
  m.def("philox_uniform", &gumbel_fused::philox_uniform_cpu,
        "debug: [words, u, g fp32, g fp64] of the given logical rows of a K-column problem",
        py::arg("seed"), py::arg("rows"), py::arg("K"));
  m.def("gumbel_from_words", &gumbel_fused::gumbel_from_words_cpu,
        "debug: [u, g fp32, g fp64] for given uint32 words (in int64)", py::arg("words"));
  m.def("check_gumbel_bound", &gumbel_fused::check_gumbel_bound,
        "debug: [checked, violations, max slack] of the hard forward's pruning bound over a range of words",
        py::arg("first_word"), py::arg("last_word"), py::arg("stride") = 1, py::call_guard<py::gil_scoped_release>());
  m.def("vec_sizes", &gumbel_fused::vec_sizes, "lanes of Vectorized<float> and Vectorized<double>");
  m.def("cpu_capability", &gumbel_fused::cpu_capability, "the CPU_CAPABILITY this module was built for");
}
