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

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "hard_wide.h"
#include "kernel_common.h"

namespace gumbel_fused {
namespace {

// Pass 1 of the soft sample over a tile, into `zbuf` (column-major, K x kLanes), with the row max m.
// In general zbuf gets z = (x + g) / tau. For tau = 1 (the default) g's second log is not needed:
// exp(z - m) = exp(x - m) exp(g) = exp(x - m) / E with E = -log(u), so zbuf gets x, `rbuf` gets 1 / E, and
// m is the max of x (a softmax allows any shift; this one keeps exp(x - m) / E <= 1 / 6e-8, far from
// overflow). Only terms more than 87 below m change: their exp underflows to 0 where the reference's
// softmax gives them less than 4e-30 (z - max z <= x - m + 16.7 + 3.1).
template <typename scalar_t, typename acc_t>
RowArgmax<acc_t> perturbed_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& x, const TileRows& rows,
                                const uint64_t* row_base, acc_t* zbuf, acc_t* rbuf) {
  using Vec = Vectorized<acc_t>;
  const DivideByTau<acc_t> divide(pb.tau);
  RowArgmax<acc_t> am;
  uint32_t words[4 * kWordStride];
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    auto z = reinterpret_cast<acc_t (*)[kLanes]>(zbuf + c0 * kLanes);
    load_chunk(x.data, rows, x.s1, c0, nc, z);
    draw_chunk_words(pb.key, row_base, c0, nc, words);
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < RowArgmax<acc_t>::H; ++h) {
        const int at = h * Vec::size();
        const Vec e = exponential_from_words<acc_t>(column_words(words, c) + at);
        if (rbuf) {
          (Vec(acc_t(1)) / e).store(rbuf + (c0 + c) * kLanes + at);
          am.update(h, Vec::loadu(z[c] + at), c0 + c);
        } else {
          const Vec v = divide(Vec::loadu(z[c] + at) + gumbel_from_exponential(e));
          v.store(z[c] + at);
          am.update(h, v, c0 + c);
        }
      }
    }
  }
  return am;
}

// Pass 1 of the hard forward over a tile: the row argmax of z, with g's second log pruned (argmax_step).
template <typename scalar_t, typename acc_t>
RowArgmax<acc_t> argmax_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& x, const TileRows& rows,
                             const uint64_t* row_base) {
  using Vec = Vectorized<acc_t>;
  const DivideByTau<acc_t> divide(pb.tau);
  RowArgmax<acc_t> am;
  uint32_t words[4 * kWordStride];
  acc_t xb[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    load_chunk(x.data, rows, x.s1, c0, nc, xb);
    draw_chunk_words(pb.key, row_base, c0, nc, words);
    const bool prune = can_prune(pb.tau, c0);
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < RowArgmax<acc_t>::H; ++h) {
        const int at = h * Vec::size();
        argmax_step(am, h, Vec::loadu(xb[c] + at), column_words(words, c) + at, c0 + c, divide, prune);
      }
    }
  }
  return am;
}

// Pass 2 of the soft sample of a tile: e = exp(z - m) in place in `ybuf`, with its row sums; and, when
// `grad` is given, the row sums of grad * e, from which the backward's sum(grad * y) = sum(grad * e) / sum(e)
// comes without a pass over y, keeping grad in `dbuf` for the last pass. NaN and non-finite rows need no
// special case: they make the sum NaN, and so the whole row NaN, as in the reference.
template <typename scalar_t, typename acc_t>
void exp_pass(const Problem<acc_t>& pb, const RowArgmax<acc_t>& am, acc_t* ybuf, const acc_t* rbuf,
              Vectorized<acc_t>* sum, const Operand<const scalar_t>* grad, const TileRows* rg, acc_t* dbuf,
              Vectorized<acc_t>* dot) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = kLanes / Vec::size();
  for (int h = 0; h < H; ++h) sum[h] = dot[h] = Vec(acc_t(0));
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    if (grad) load_chunk(grad->data, *rg, grad->s1, c0, nc, reinterpret_cast<acc_t (*)[kLanes]>(dbuf + c0 * kLanes));
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < H; ++h) {
        const int64_t at = (c0 + c) * kLanes + h * Vec::size();
        Vec e = (Vec::loadu(ybuf + at) - am.best[h]).exp();  // Sleef (exp_u20 is 20 ulp, and maps NaN to inf)
        if (rbuf) e = e * Vec::loadu(rbuf + at);                // tau = 1: exp(x - m) / E, see perturbed_tile
        e.store(ybuf + at);
        sum[h] = sum[h] + e;
        if (grad) dot[h] = at::vec::fmadd(Vec::loadu(dbuf + at), e, dot[h]);
      }
    }
  }
}

// The per-task scratch of the soft sample and the backward: three column-major K x kLanes buffers.
template <typename acc_t>
struct Scratch {
  static constexpr int kBuffers = 3;
  acc_t* y;   // z, then exp(z - m), then (in the backward) dx
  acc_t* r;   // 1 / E when tau = 1 (see perturbed_tile), else null
  acc_t* dy;  // the backward's grad, loaded once
  Scratch(const Problem<acc_t>& pb, acc_t* base)
      : y(base), r(pb.tau == acc_t(1) ? base + pb.n_cols * kLanes : nullptr), dy(base + 2 * pb.n_cols * kLanes) {}
};

// Final pass of the soft forward and the backward: y = e / sum per chunk, handed to fn(c0, nc, y) in a
// chunk buffer (which fn may overwrite) for it to combine and store.
template <typename acc_t, typename Fn>
void normalized_chunks(const Problem<acc_t>& pb, const acc_t* ybuf, const Vectorized<acc_t>* sum, const Fn& fn) {
  using Vec = Vectorized<acc_t>;
  acc_t y[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < kLanes; h += Vec::size()) {
        // A division, not a multiply by 1 / sum: it keeps a row's only finite entry at exactly 1 (K = 1).
        (Vec::loadu(ybuf + (c0 + c) * kLanes + h) / sum[h / Vec::size()]).store(y[c] + h);
      }
    }
    fn(c0, nc, y);
  }
}

// The tile functions are kept out of line: one call per 16 x K elements costs nothing, and it keeps each
// one's register allocation independent of the others' (inlined together, they measurably slowed down).
template <typename scalar_t, typename acc_t>
C10_NOINLINE void hard_fwd_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& x,
                                const Operand<scalar_t>& out, const TileRows& rx, const TileRows& ry,
                                const uint64_t* row_base) {
  using Vec = Vectorized<acc_t>;
  using Arg = RowArgmax<acc_t>;
  const Arg am = argmax_tile<scalar_t, acc_t>(pb, x, rx, row_base);
  acc_t max[kLanes];
  typename Arg::index_t hot[kLanes];
  am.result(max, hot);
  if (out.s1 == 1) {  // inner == 1: each row is contiguous, so fill it and set its one; no transpose
    for (int j = 0; j < ry.count; ++j) {
      scalar_t* row = out.data + ry.offset[j];
      std::fill_n(row, pb.n_cols, static_cast<scalar_t>(hot[j] < 0 ? NAN : 0.0f));
      if (hot[j] >= 0) row[hot[j]] = scalar_t(1);
    }
    return;
  }
  const Vec nan(std::numeric_limits<acc_t>::quiet_NaN()), zero(acc_t(0)), one(acc_t(1));
  acc_t y[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < kLanes; h += Vec::size()) {
        const auto hot_h = Arg::Idx::loadu(hot + h);
        const Vec is_hot = at::vec::cast<acc_t>(hot_h == typename Arg::Idx(c0 + c));
        const Vec undefined = at::vec::cast<acc_t>(hot_h < typename Arg::Idx(0));
        Vec::blendv(Vec::blendv(zero, nan, undefined), one, is_hot).store(y[c] + h);
      }
    }
    store_chunk(out.data, ry, out.s1, c0, nc, y);
  }
}

template <typename scalar_t, typename acc_t>
C10_NOINLINE void soft_fwd_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& x,
                                const Operand<scalar_t>& out, const TileRows& rx, const TileRows& ry,
                                const uint64_t* row_base, acc_t* scratch) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = kLanes / Vec::size();
  const Scratch<acc_t> buf(pb, scratch);
  const RowArgmax<acc_t> am = perturbed_tile(pb, x, rx, row_base, buf.y, buf.r);
  Vec sum[H], unused[H];
  exp_pass<scalar_t, acc_t>(pb, am, buf.y, buf.r, sum, nullptr, nullptr, nullptr, unused);
  normalized_chunks(pb, buf.y, sum, [&](int64_t c0, int nc, acc_t (*y)[kLanes]) {
    store_chunk(out.data, ry, out.s1, c0, nc, y);
  });
}

// dx = y * (dy - sum(dy * y)) / tau, with y regenerated from the logits (recompute: three passes, the
// noise drawn once) or loaded from the saved soft sample.
template <typename scalar_t, typename acc_t>
C10_NOINLINE void bwd_tile(const Problem<acc_t>& pb, const Operand<const scalar_t>& grad,
                           const Operand<const scalar_t>& saved, const Operand<scalar_t>& out, const TileRows& rg,
                           const TileRows& rs, const TileRows& ro, const uint64_t* row_base, bool recompute,
                           acc_t* scratch) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = kLanes / Vec::size();
  const Scratch<acc_t> buf(pb, scratch);
  Vec sum[H], dot[H];  // y = buf.y / sum; dot = sum(dy * y)
  if (recompute) {
    const RowArgmax<acc_t> am = perturbed_tile(pb, saved, rs, row_base, buf.y, buf.r);
    exp_pass(pb, am, buf.y, buf.r, sum, &grad, &rg, buf.dy, dot);
    for (int h = 0; h < H; ++h) dot[h] = dot[h] / sum[h];
  } else {
    for (int h = 0; h < H; ++h) {
      sum[h] = Vec(acc_t(1));
      dot[h] = Vec(acc_t(0));
    }
    for (int64_t c0 = 0; c0 < pb.n_cols; c0 += kChunk) {
      const int nc = static_cast<int>(std::min<int64_t>(kChunk, pb.n_cols - c0));
      auto y = reinterpret_cast<acc_t (*)[kLanes]>(buf.y + c0 * kLanes);
      auto dy = reinterpret_cast<acc_t (*)[kLanes]>(buf.dy + c0 * kLanes);
      load_chunk(saved.data, rs, saved.s1, c0, nc, y);
      load_chunk(grad.data, rg, grad.s1, c0, nc, dy);
      for (int c = 0; c < nc; ++c) {
        for (int h = 0; h < H; ++h) {
          const int at = h * Vec::size();
          dot[h] = at::vec::fmadd(Vec::loadu(dy[c] + at), Vec::loadu(y[c] + at), dot[h]);
        }
      }
    }
  }
  const DivideByTau<acc_t> divide(pb.tau);
  normalized_chunks(pb, buf.y, sum, [&](int64_t c0, int nc, acc_t (*y)[kLanes]) {
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < H; ++h) {
        const int at = h * Vec::size();
        const Vec g = Vec::loadu(buf.dy + (c0 + c) * kLanes + at) - dot[h];
        divide(Vec::loadu(y[c] + at) * g).store(y[c] + at);
      }
    }
    store_chunk(out.data, ro, out.s1, c0, nc, y);
  });
}

// Runs fn(r0, count, row_base, scratch) on every tile of 16 rows, in parallel. `scratch` is a per-task
// buffer for Scratch when asked for (the soft sample and the backward), else null.
template <typename acc_t, typename Fn>
void parallel_tiles(const Problem<acc_t>& pb, bool scratch, const Fn& fn) {
  const int64_t tiles = (pb.rows + kLanes - 1) / kLanes;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / (kLanes * pb.n_cols));
  at::parallel_for(0, tiles, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> buf(scratch ? new acc_t[Scratch<acc_t>::kBuffers * pb.n_cols * kLanes] : nullptr);
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

// A contiguous (outer, K, inner) output like `t`. A large one is backed by transparent huge pages where
// the kernel allows them on request (THP "madvise" mode, as torch itself does under
// THP_MEM_ALLOC_ENABLE=1): outputs above glibc's mmap threshold (32 MiB at most) are fresh pages on every
// call, and faulting them in 4 KiB at a time cost ~1.4 ns an element on the dVAE case, 40% of the kernel.
at::Tensor new_output(const at::Tensor& t) {
  at::Tensor out = at::empty(t.sizes(), t.options());
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  if (out.nbytes() >= 4 * kHugePage) {  // the whole huge pages inside it; the ends stay small pages
    const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const uintptr_t last = (begin + out.nbytes()) & ~(kHugePage - 1);
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);  // advice only: failure is harmless
  }
#endif
  return out;
}

template <typename acc_t>
Problem<acc_t> problem(const at::Tensor& t, int64_t seed, double tau) {
  return {t.size(1), t.size(2), t.size(0) * t.size(2), noise_key(seed, t.size(1)), static_cast<acc_t>(tau)};
}

}  // namespace

at::Tensor gumbel_softmax_fwd_cpu(const at::Tensor& logits, const at::Tensor& seed, double tau, bool hard) {
  check_operand(logits, "logits");
  const int64_t seed_value = read_seed(seed);
  at::Tensor out = new_output(logits);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "gumbel_softmax_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;  // fp32 math for fp16/bf16/fp32, fp64 for fp64
    const auto pb = problem<acc_t>(logits, seed_value, tau);
    const auto x = operand(logits.const_data_ptr<scalar_t>(), logits);
    const auto y = operand(out.mutable_data_ptr<scalar_t>(), out);
    if (hard && hard_fwd_wide(pb, x, y)) return;
    parallel_tiles(pb, !hard, [&](int64_t r0, int count, const uint64_t* row_base, acc_t* scratch) {
      const TileRows rx = tile_rows(r0, count, pb.inner, x.s0, x.s2);
      const TileRows ry = tile_rows(r0, count, pb.inner, y.s0, y.s2);
      if (hard) {
        hard_fwd_tile(pb, x, y, rx, ry, row_base);
      } else {
        soft_fwd_tile(pb, x, y, rx, ry, row_base, scratch);
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
  at::Tensor out = new_output(saved);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "gumbel_softmax_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto pb = problem<acc_t>(saved, seed_value, tau);
    const auto g = operand(grad.const_data_ptr<scalar_t>(), grad);
    const auto s = operand(saved.const_data_ptr<scalar_t>(), saved);
    const auto dx = operand(out.mutable_data_ptr<scalar_t>(), out);
    parallel_tiles(pb, true, [&](int64_t r0, int count, const uint64_t* row_base, acc_t* scratch) {
      const TileRows rg = tile_rows(r0, count, pb.inner, g.s0, g.s2);
      const TileRows rs = tile_rows(r0, count, pb.inner, s.s0, s.s2);
      const TileRows ro = tile_rows(r0, count, pb.inner, dx.s0, dx.s2);
      bwd_tile(pb, g, s, dx, rg, rs, ro, row_base, recompute, scratch);
    });
  });
  return out;
}

}  // namespace gumbel_fused
