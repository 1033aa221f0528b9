// Fused Gumbel-softmax forward and backward for CPU tensors: one kernel a direction, per tile of 16
// rows: Philox noise -> (logits + g) / tau -> softmax or argmax -> output, never materializing the
// noise. Vectorized with at::vec, parallel over tiles with at::parallel_for. A row's result depends
// only on its own elements and counters, so any split of the tiles between threads gives the same
// bits: results do not depend on the thread count.
//
// Gumbel-softmax: Jang, Gu, Poole, "Categorical Reparameterization with Gumbel-Softmax" (2017),
// arXiv:1611.01144. The RNG contract and the op boundary: DESIGN.md sections 2-3.
#include "kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "noise.h"
#include "tile.h"

namespace gumbel_fused {
namespace {

using at::vec::Vectorized;

// ~16K elements a task: a task costs ~10-40 us, well above the few us of waking an OpenMP thread, and
// small problems (the VAE's 2000 x 10) stay on the calling thread.
constexpr int64_t kGrainElements = 1 << 14;

// An (outer, K, inner) operand: data and element strides.
template <typename T>
struct Operand {
  T* data;
  int64_t s0, s1, s2;
};

template <typename T>
Operand<T> operand(T* data, const at::Tensor& t) {
  return {data, t.stride(0), t.stride(1), t.stride(2)};
}

template <typename acc_t>
struct Problem {
  int64_t n_cols, inner, rows;  // K, inner, outer * inner
  NoiseKey key;
  acc_t tau;
};

// Per-row state of the pass over z = (x + g) / tau.
template <typename acc_t>
struct RowArgmax {
  acc_t best[kLanes];   // running max of z; a NaN never wins the > comparison
  int32_t arg[kLanes];  // first column holding it (strict >: ties keep the first index, as argmax does)
  int32_t nan[kLanes];  // the row holds a NaN

  RowArgmax() {
    std::fill_n(best, kLanes, -std::numeric_limits<acc_t>::infinity());
    std::fill_n(arg, kLanes, 0);
    std::fill_n(nan, kLanes, 0);
  }
  void update(const acc_t (*z)[kLanes], int64_t c0, int nc) {
    for (int c = 0; c < nc; ++c) {
      const auto col = static_cast<int32_t>(c0 + c);
      for (int j = 0; j < kLanes; ++j) {  // branch-free so that it vectorizes
        const bool gt = z[c][j] > best[j];
        best[j] = gt ? z[c][j] : best[j];
        arg[j] = gt ? col : arg[j];
        nan[j] |= static_cast<int32_t>(z[c][j] != z[c][j]);
      }
    }
  }
  // The reference's softmax is NaN on a whole row when its max is NaN or infinite (+inf - +inf, or all
  // -inf: -inf - -inf), and the hard sample keeps that NaN rather than a one-hot.
  bool undefined(int j) const { return nan[j] || !std::isfinite(best[j]); }
};

// z[c][j] = (x + g) / tau for the columns c0 .. c0 + nc - 1 of a tile, in the math dtype. A division
// rather than a multiply by 1 / tau, as the reference does, so that z ties exactly where its ties are.
template <typename scalar_t, typename acc_t>
void perturbed_chunk(const Problem<acc_t>& pb, const Operand<const scalar_t>& x, const TileRows& rows,
                     const uint64_t* row_base, int64_t c0, int nc, acc_t (*z)[kLanes]) {
  using Vec = Vectorized<acc_t>;
  load_chunk(x.data, rows, x.s1, c0, nc, z);
  uint32_t words[4 * kWordStride];
  draw_chunk_words(pb.key, row_base, c0, nc, words);
  const Vec tau(pb.tau);
  for (int c = 0; c < nc; ++c) {
    acc_t g[kLanes];
    gumbel_from_words(column_words(words, c), g);
    for (int h = 0; h < kLanes; h += Vec::size()) {
      ((Vec::loadu(z[c] + h) + Vec::loadu(g + h)) / tau).store(z[c] + h);
    }
  }
}

// Pass 1 over a whole tile: the per-row max and argmax of z. Keeps z in `zbuf` (column-major,
// K x kLanes) when given, for the softmax; the hard forward only needs the argmax and passes null.
template <typename scalar_t, typename acc_t>
RowArgmax<acc_t> perturbed_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& x, const TileRows& rows,
                                const uint64_t* row_base, acc_t* zbuf) {
  RowArgmax<acc_t> am;
  acc_t local[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    auto z = zbuf ? reinterpret_cast<acc_t (*)[kLanes]>(zbuf + c0 * kLanes) : local;
    perturbed_chunk(pb, x, rows, row_base, c0, nc, z);
    am.update(z, c0, nc);
  }
  return am;
}

// The soft sample y = softmax(z) of a tile, into `ybuf` (column-major, K x kLanes): z, then
// e = exp(z - max) with its row sums, then e * (1 / sum). NaN and non-finite rows need no special case:
// they make the sum NaN, and so the whole row NaN, as in the reference.
template <typename scalar_t, typename acc_t>
void soft_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& x, const TileRows& rows,
               const uint64_t* row_base, acc_t* ybuf) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = kLanes / Vec::size();
  const RowArgmax<acc_t> am = perturbed_tile(pb, x, rows, row_base, ybuf);
  Vec max[H], sum[H];
  for (int h = 0; h < H; ++h) {
    max[h] = Vec::loadu(am.best + h * Vec::size());
    sum[h] = Vec(acc_t(0));
  }
  for (int64_t c = 0; c < pb.n_cols; ++c) {
    for (int h = 0; h < H; ++h) {
      acc_t* p = ybuf + c * kLanes + h * Vec::size();
      const Vec e = (Vec::loadu(p) - max[h]).exp();
      e.store(p);
      sum[h] = sum[h] + e;
    }
  }
  for (int h = 0; h < H; ++h) sum[h] = Vec(acc_t(1)) / sum[h];
  for (int64_t c = 0; c < pb.n_cols; ++c) {
    for (int h = 0; h < H; ++h) {
      acc_t* p = ybuf + c * kLanes + h * Vec::size();
      (Vec::loadu(p) * sum[h]).store(p);
    }
  }
}

template <typename scalar_t, typename acc_t>
void hard_fwd_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& x, const Operand<scalar_t>& out,
                   const TileRows& rx, const TileRows& ry, const uint64_t* row_base) {
  const RowArgmax<acc_t> am = perturbed_tile<scalar_t, acc_t>(pb, x, rx, row_base, nullptr);
  int32_t hot[kLanes];  // the column that gets 1, or -1 for an undefined row, which is all NaN
  acc_t fill[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    const bool undefined = am.undefined(j);
    hot[j] = undefined ? -1 : am.arg[j];
    fill[j] = undefined ? std::numeric_limits<acc_t>::quiet_NaN() : acc_t(0);
  }
  acc_t y[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    for (int c = 0; c < nc; ++c) {
      const auto col = static_cast<int32_t>(c0 + c);
      for (int j = 0; j < kLanes; ++j) y[c][j] = col == hot[j] ? acc_t(1) : fill[j];
    }
    store_chunk(out.data, ry, out.s1, c0, nc, y);
  }
}

template <typename scalar_t, typename acc_t>
void soft_fwd_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& x, const Operand<scalar_t>& out,
                   const TileRows& rx, const TileRows& ry, const uint64_t* row_base, acc_t* ybuf) {
  soft_tile(pb, x, rx, row_base, ybuf);
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    store_chunk(out.data, ry, out.s1, c0, nc, reinterpret_cast<const acc_t (*)[kLanes]>(ybuf + c0 * kLanes));
  }
}

// dx = y * (dy - sum(dy * y)) / tau, with y regenerated from the logits (recompute) or loaded.
template <typename scalar_t, typename acc_t>
void bwd_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& grad, const Operand<const scalar_t>& saved,
              const Operand<scalar_t>& out, const TileRows& rg, const TileRows& rs, const TileRows& ro,
              const uint64_t* row_base, bool recompute, acc_t* ybuf) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = kLanes / Vec::size();
  if (recompute) {
    soft_tile(pb, saved, rs, row_base, ybuf);
  } else {
    for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
      const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
      load_chunk(saved.data, rs, saved.s1, c0, nc, reinterpret_cast<acc_t (*)[kLanes]>(ybuf + c0 * kLanes));
    }
  }
  Vec dot[H];
  for (int h = 0; h < H; ++h) dot[h] = Vec(acc_t(0));
  acc_t dy[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    load_chunk(grad.data, rg, grad.s1, c0, nc, dy);
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < H; ++h) {
        const Vec y = Vec::loadu(ybuf + (c0 + c) * kLanes + h * Vec::size());
        dot[h] = dot[h] + Vec::loadu(dy[c] + h * Vec::size()) * y;
      }
    }
  }
  const Vec tau(pb.tau);
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    load_chunk(grad.data, rg, grad.s1, c0, nc, dy);  // reloaded: cheaper than a second K x kLanes buffer
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < H; ++h) {
        const Vec y = Vec::loadu(ybuf + (c0 + c) * kLanes + h * Vec::size());
        const Vec g = Vec::loadu(dy[c] + h * Vec::size());
        (y * (g - dot[h]) / tau).store(dy[c] + h * Vec::size());
      }
    }
    store_chunk(out.data, ro, out.s1, c0, nc, dy);
  }
}

// Runs fn(r0, count, row_base, scratch) on every tile of 16 rows, in parallel. `scratch` is a per-task
// K x kLanes buffer when asked for (the soft sample of a tile), else null.
template <typename acc_t, typename Fn>
void parallel_tiles(const Problem<acc_t>& pb, bool scratch, const Fn& fn) {
  const int64_t tiles = (pb.rows + kLanes - 1) / kLanes;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / (kLanes * pb.n_cols));
  at::parallel_for(0, tiles, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> buf(scratch ? new acc_t[pb.n_cols * kLanes] : nullptr);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r0 = t * kLanes;
      const int count = static_cast<int>(std::min<int64_t>(kLanes, pb.rows - r0));
      TORCH_INTERNAL_ASSERT(count >= 1 && count <= kLanes);
      uint64_t row_base[kLanes];  // counter of (row, column 0): n = r * ceil(K / 4)
      for (int j = 0; j < kLanes; ++j) row_base[j] = static_cast<uint64_t>(r0 + j) * pb.key.groups;
      fn(r0, count, row_base, buf.get());
    }
  });
}

void check_operand(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 3, "gumbel_fused: ", name, " must be a 3-D (outer, K, inner) view, got ", t.dim(), "-D");
  TORCH_CHECK(t.device().is_cpu(), "gumbel_fused: ", name, " must be a CPU tensor, got ", t.device());
  const auto dt = t.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kHalf || dt == at::kBFloat16,
              "gumbel_fused: ", name, " must be float16, bfloat16, float32 or float64, got ", dt);
  TORCH_CHECK(t.size(1) <= std::numeric_limits<int32_t>::max(), "gumbel_fused: at most 2^31 - 1 categories");
}

int64_t read_seed(const at::Tensor& seed) {
  TORCH_CHECK(seed.dim() == 0 && seed.scalar_type() == at::kLong && seed.device().is_cpu(),
              "gumbel_fused: seed must be a 0-dim int64 CPU tensor, got ", seed.sizes(), " ", seed.scalar_type(),
              " on ", seed.device());
  return *seed.const_data_ptr<int64_t>();  // a pointer read: no dispatch, no sync
}

template <typename acc_t>
Problem<acc_t> problem(const at::Tensor& t, int64_t seed, double tau) {
  return {t.size(1), t.size(2), t.size(0) * t.size(2), noise_key(seed, t.size(1)), static_cast<acc_t>(tau)};
}

}  // namespace

at::Tensor gumbel_softmax_fwd_cpu(const at::Tensor& logits, const at::Tensor& seed, double tau, bool hard) {
  check_operand(logits, "logits");
  const int64_t seed_value = read_seed(seed);
  at::Tensor out = at::empty(logits.sizes(), logits.options());  // contiguous (outer, K, inner)
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "gumbel_softmax_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;  // fp32 math for fp16/bf16/fp32, fp64 for fp64
    const auto pb = problem<acc_t>(logits, seed_value, tau);
    const auto x = operand(logits.const_data_ptr<scalar_t>(), logits);
    const auto y = operand(out.mutable_data_ptr<scalar_t>(), out);
    parallel_tiles(pb, !hard, [&](int64_t r0, int count, const uint64_t* row_base, acc_t* ybuf) {
      const TileRows rx = tile_rows(r0, count, pb.inner, x.s0, x.s2);
      const TileRows ry = tile_rows(r0, count, pb.inner, y.s0, y.s2);
      if (hard) {
        hard_fwd_tile(pb, x, y, rx, ry, row_base);
      } else {
        soft_fwd_tile(pb, x, y, rx, ry, row_base, ybuf);
      }
    });
  });
  return out;
}

at::Tensor gumbel_softmax_bwd_cpu(const at::Tensor& grad, const at::Tensor& saved, const at::Tensor& seed,
                                  double tau, bool recompute) {
  check_operand(grad, "grad");
  check_operand(saved, "saved");
  TORCH_CHECK(grad.sizes() == saved.sizes(), "gumbel_fused: grad ", grad.sizes(), " and saved ", saved.sizes(),
              " must have the same shape");
  TORCH_CHECK(grad.scalar_type() == saved.scalar_type(), "gumbel_fused: grad (", grad.scalar_type(),
              ") and saved (", saved.scalar_type(), ") must have the same dtype");
  const int64_t seed_value = read_seed(seed);
  at::Tensor out = at::empty(saved.sizes(), saved.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "gumbel_softmax_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto pb = problem<acc_t>(saved, seed_value, tau);
    const auto g = operand(grad.const_data_ptr<scalar_t>(), grad);
    const auto s = operand(saved.const_data_ptr<scalar_t>(), saved);
    const auto dx = operand(out.mutable_data_ptr<scalar_t>(), out);
    parallel_tiles(pb, true, [&](int64_t r0, int count, const uint64_t* row_base, acc_t* ybuf) {
      const TileRows rg = tile_rows(r0, count, pb.inner, g.s0, g.s2);
      const TileRows rs = tile_rows(r0, count, pb.inner, s.s0, s.s2);
      const TileRows ro = tile_rows(r0, count, pb.inner, dx.s0, dx.s2);
      bwd_tile(pb, g, s, dx, rg, rs, ro, row_base, recompute, ybuf);
    });
  });
  return out;
}

}  // namespace gumbel_fused
