// Debug entry points that expose the kernels' own noise path (noise.h) word for word, so that the golden
// tests (../shared/rng_golden.json) check the C++ Philox and uniforms bit for bit, not a re-implementation.
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"
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
      const int64_t at = (r0 + j) * ld + col;
      words[at] = w[j];
      u[at] = uniform_from_word(w[j]);
      g32[at] = g32_lanes[j];
      g64[at] = g64_lanes[j];
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

}  // namespace

std::vector<at::Tensor> philox_uniform_cpu(int64_t seed, const at::Tensor& rows, int64_t n_cols) {
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

std::vector<at::Tensor> gumbel_from_words_cpu(const at::Tensor& words) {
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

std::vector<double> check_gumbel_bound(double lo, double hi) {
  using Vf = at::vec::Vectorized<float>;
  uint32_t bits_lo, bits_hi;
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  std::memcpy(&bits_lo, &flo, 4);
  std::memcpy(&bits_hi, &fhi, 4);
  int64_t checked = 0, violations = 0;
  double max_slack = 0;  // how far above g the bound may be: the cost of the pruning, not its correctness
  float e[Vf::size()], g[Vf::size()], bound[Vf::size()];
  for (uint32_t b = bits_lo; b <= bits_hi; b += Vf::size()) {
    for (int j = 0; j < Vf::size(); ++j) {
      const uint32_t bj = std::min(b + j, bits_hi);
      std::memcpy(&e[j], &bj, 4);
    }
    const Vf ev = Vf::loadu(e);
    gumbel_from_exponential(ev).store(g);
    gumbel_upper_bound(ev).store(bound);
    for (int j = 0; j < Vf::size(); ++j) {
      violations += !(bound[j] >= g[j]);
      max_slack = std::max(max_slack, static_cast<double>(bound[j]) - g[j]);
    }
    checked += Vf::size();
    if (b > bits_hi - Vf::size()) break;  // no wrap-around at the top
  }
  return {static_cast<double>(checked), static_cast<double>(violations), max_slack};
}

std::vector<int64_t> vec_sizes() {
  return {at::vec::Vectorized<float>::size(), at::vec::Vectorized<double>::size()};
}

std::string cpu_capability() { return GUMBEL_FUSED_STR(CPU_CAPABILITY); }

}  // namespace gumbel_fused
