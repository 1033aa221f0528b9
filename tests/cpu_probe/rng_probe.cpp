// A test-only extension that exposes the kernels' own noise path (csrc/noise.h, csrc/philox.h) word for
// word, so that the golden tests check the C++ Philox, uniforms and Gumbel noise bit for bit rather than a
// re-implementation. tests/test_cpu.py builds it with the shipped kernels' flags for this CPU's variant;
// the shipped extension carries none of these entry points.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <string>
#include <vector>

#include "noise.h"

#define GUMBEL_FUSED_STR2(x) #x
#define GUMBEL_FUSED_STR(x) GUMBEL_FUSED_STR2(x)

namespace gumbel_fused {
namespace {

// Fills row i of the outputs from the kLanes words w (lanes >= count are ignored).
struct NoiseRows {
  int64_t* words;
  float* u;
  float* g32;
  double* g64;
  int64_t ld;  // elements per output row

  void put(int64_t r0, int count, int64_t col, const uint32_t* w) const {
    float g32_lanes[kLanes];
    double g64_lanes[kLanes];
    gumbel_from_words(w, g32_lanes);
    gumbel_from_words(w, g64_lanes);
    for (int j = 0; j < count; ++j) {
      const int64_t index = (r0 + j) * ld + col;
      words[index] = w[j];
      u[index] = uniform_from_word(w[j]);
      g32[index] = g32_lanes[j];
      g64[index] = g64_lanes[j];
    }
  }
};

std::vector<at::Tensor> noise_outputs(int64_t n, int64_t n_cols, NoiseRows& rows) {
  auto opts = at::TensorOptions().device(at::kCPU);
  std::vector<at::Tensor> out = {at::empty({n, n_cols}, opts.dtype(at::kLong)),
                                 at::empty({n, n_cols}, opts.dtype(at::kFloat)),
                                 at::empty({n, n_cols}, opts.dtype(at::kFloat)),
                                 at::empty({n, n_cols}, opts.dtype(at::kDouble))};
  rows = {out[0].mutable_data_ptr<int64_t>(), out[1].mutable_data_ptr<float>(), out[2].mutable_data_ptr<float>(),
          out[3].mutable_data_ptr<double>(), n_cols};
  return out;
}

// For logical `rows` (1-D int64) of a K-column problem: [words (int64 holding the uint32 words),
// u (fp32, unclamped), g (fp32), g (fp64)], each of shape (len(rows), K).
std::vector<at::Tensor> philox_uniform(int64_t seed, const at::Tensor& rows, int64_t n_cols) {
  TORCH_CHECK(rows.dim() == 1 && rows.scalar_type() == at::kLong && rows.device().is_cpu(),
              "philox_uniform: rows must be a 1-D int64 CPU tensor");
  TORCH_CHECK(n_cols >= 1, "philox_uniform: K must be positive");
  const at::Tensor r = rows.contiguous();
  const int64_t* row_ids = r.const_data_ptr<int64_t>();
  const int64_t n = r.numel();
  NoiseRows dst{};
  std::vector<at::Tensor> out = noise_outputs(n, n_cols, dst);
  const NoiseKey key = noise_key(seed, n_cols);
  for (int64_t r0 = 0; r0 < n; r0 += kLanes) {
    const int count = static_cast<int>(std::min<int64_t>(kLanes, n - r0));
    uint64_t row_base[kLanes];  // as the kernels' tiles, but for arbitrary (e.g. 64-bit) row indices
    for (int j = 0; j < kLanes; ++j) {
      row_base[j] = static_cast<uint64_t>(row_ids[r0 + std::min(j, count - 1)]) * key.groups;
    }
    for (int64_t c0 = 0; c0 < n_cols; c0 += kChunk) {
      const int nc = static_cast<int>(std::min<int64_t>(kChunk, n_cols - c0));
      uint32_t words[4 * kWordStride];
      draw_chunk_words(key, row_base, c0, nc, words);
      for (int c = 0; c < nc; ++c) dst.put(r0, count, c0 + c, column_words(words, c));
    }
  }
  return out;
}

// The same word -> uniform -> Gumbel path for given words (1-D int64 holding uint32 values):
// [u (fp32, unclamped), g (fp32), g (fp64)].
std::vector<at::Tensor> noise_of_words(const at::Tensor& words) {
  TORCH_CHECK(words.dim() == 1 && words.scalar_type() == at::kLong && words.device().is_cpu(),
              "gumbel_from_words: words must be a 1-D int64 CPU tensor");
  const at::Tensor w = words.contiguous();
  const int64_t n = w.numel();
  NoiseRows dst{};
  std::vector<at::Tensor> out = noise_outputs(n, 1, dst);
  for (int64_t r0 = 0; r0 < n; r0 += kLanes) {
    const int count = static_cast<int>(std::min<int64_t>(kLanes, n - r0));
    uint32_t lanes[kLanes] = {};
    for (int j = 0; j < count; ++j) lanes[j] = static_cast<uint32_t>(w.const_data_ptr<int64_t>()[r0 + j]);
    dst.put(r0, count, 0, lanes);
  }
  return {out[1].view({n}), out[2].view({n}), out[3].view({n})};  // the words are the input
}

// Checks the hard forward's pruning bound (noise.h) against the computed Gumbel value for every word in
// first_word, first_word + stride, ... <= last_word: [words checked, violations, max slack of the bound].
std::vector<double> check_gumbel_bound(int64_t first_word, int64_t last_word, int64_t stride) {
  using Vf = at::vec::Vectorized<float>;
  TORCH_CHECK(0 <= first_word && first_word <= last_word && last_word <= 0xFFFFFFFFLL && stride >= 1,
              "check_gumbel_bound: words in [0, 2^32), stride >= 1");
  const int64_t n = (last_word - first_word) / stride + 1;  // words first_word + i * stride, i < n
  constexpr int64_t kBlock = int64_t{1} << 20;
  const int64_t blocks = (n - 1) / kBlock + 1;
  std::vector<int64_t> violations(blocks, 0);
  std::vector<double> slack(blocks, 0.0);  // how far above g the bound may be: the pruning's cost, not its safety
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    uint32_t w[Vf::size()];
    float g[Vf::size()], bound[Vf::size()];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t lo = blk * kBlock, hi = std::min(n - 1, lo + kBlock - 1);
      for (int64_t v = lo; v <= hi; v += Vf::size()) {
        for (int j = 0; j < Vf::size(); ++j) w[j] = static_cast<uint32_t>(first_word + std::min(v + j, hi) * stride);
        gumbel_from_exponential(exponential_from_words<float>(w)).store(g);
        gumbel_upper_bound(w).store(bound);
        for (int j = 0; j < Vf::size(); ++j) {
          violations[blk] += !(bound[j] >= g[j]);
          slack[blk] = std::max(slack[blk], static_cast<double>(bound[j]) - g[j]);
        }
      }
    }
  });
  int64_t total = 0;
  double max_slack = 0;
  for (int64_t blk = 0; blk < blocks; ++blk) {
    total += violations[blk];
    max_slack = std::max(max_slack, slack[blk]);
  }
  return {static_cast<double>(n), static_cast<double>(total), max_slack};
}

// Lanes of at::vec::Vectorized<float> and <double> in this build, and the CPU_CAPABILITY it was built for.
std::vector<int64_t> vec_sizes() {
  return {at::vec::Vectorized<float>::size(), at::vec::Vectorized<double>::size()};
}

std::string cpu_capability() { return GUMBEL_FUSED_STR(CPU_CAPABILITY); }

}  // namespace
}  // namespace gumbel_fused

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace gumbel_fused;
  m.def("philox_uniform", &philox_uniform, py::arg("seed"), py::arg("rows"), py::arg("K"));
  m.def("gumbel_from_words", &noise_of_words, py::arg("words"));
  m.def("check_gumbel_bound", &check_gumbel_bound, py::arg("first_word"), py::arg("last_word"),
        py::arg("stride") = 1, py::call_guard<py::gil_scoped_release>());
  m.def("vec_sizes", &vec_sizes);
  m.def("cpu_capability", &cpu_capability);
}
