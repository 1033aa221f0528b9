// Fused Gumbel-softmax forward and backward for CPU tensors: one kernel a direction, per tile of 16
// rows: Philox noise -> ((logits - max) + g) / tau -> softmax or argmax -> output, never materializing the
// noise. Vectorized with at::vec, parallel over tiles with at::parallel_for. A row's result depends
// only on its own elements and counters, so any split of the tiles between threads gives the same
// bits: results do not depend on the thread count.
//
// Gumbel-softmax: Jang, Gu, Poole, "Categorical Reparameterization with Gumbel-Softmax" (2017),
// arXiv:1611.01144. The RNG contract and the op boundary: docs/DESIGN.md sections 2-3.
#include "kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <limits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "estimators.h"
#include "hard_wide.h"
#include "kernel_common.h"
#include "softmax_passes.h"

namespace gumbel_fused {
namespace {

// The tile functions are kept out of line: one call per 16 x K elements costs nothing, and it keeps each
// one's register allocation independent of the others' (inlined together, they measurably slowed down).
// `sample` (null for none): each row's category, row r at sample[r], for the tile's rows from r0.
template <typename scalar_t, typename acc_t>
C10_NOINLINE void hard_fwd_tile(const Problem<acc_t>& problem, const Operand<const scalar_t>& x,
                                const Operand<scalar_t>& out, const TileRows& x_rows, const TileRows& out_rows,
                                const uint64_t* row_base, int64_t* sample) {
  using Vec = Vectorized<acc_t>;
  using Arg = RowArgmax<acc_t>;
  const Arg argmax = argmax_tile<scalar_t, acc_t>(problem, x, x_rows, row_base);
  acc_t max[kLanes];
  typename Arg::index_t hot[kLanes];
  argmax.result(max, hot);
  if (sample) record_sample(hot, out_rows.count, sample);
  if (out.s1 == 1) {  // inner == 1: each row is contiguous, so fill it and set its one; no transpose
    for (int j = 0; j < out_rows.count; ++j) {
      scalar_t* row = out.data + out_rows.offset[j];
      std::fill_n(row, problem.n_cols, static_cast<scalar_t>(hot[j] < 0 ? NAN : 0.0f));
      if (hot[j] >= 0) row[hot[j]] = scalar_t(1);
    }
    return;
  }
  const Vec nan(std::numeric_limits<acc_t>::quiet_NaN()), zero(acc_t(0)), one(acc_t(1));
  acc_t y[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < kLanes; h += Vec::size()) {
        const auto hot_h = Arg::Idx::loadu(hot + h);
        const Vec is_hot = at::vec::cast<acc_t>(hot_h == typename Arg::Idx(c0 + c));
        const Vec undefined = at::vec::cast<acc_t>(hot_h < typename Arg::Idx(0));
        Vec::blendv(Vec::blendv(zero, nan, undefined), one, is_hot).store(y[c] + h);
      }
    }
    store_chunk(out.data, out_rows, out.s1, c0, nc, y);
  }
}

template <typename scalar_t, typename acc_t>
C10_NOINLINE void soft_fwd_tile(const Problem<acc_t>& problem, const Operand<const scalar_t>& x,
                                const Operand<scalar_t>& out, const TileRows& x_rows, const TileRows& out_rows,
                                const uint64_t* row_base, acc_t* scratch) {
  const Scratch<acc_t> buf(problem, /*draws_noise=*/true, /*backward=*/false, scratch);
  const RowArgmax<acc_t> argmax = perturbed_tile(problem, x, x_rows, row_base, buf.y, buf.inv_e);
  SoftmaxSums<acc_t> sums;
  exp_pass<scalar_t, acc_t>(problem, argmax, buf.y, buf.inv_e, nullptr, nullptr, nullptr, sums);
  normalized_chunks(problem, buf.y, sums.sum, [&](int64_t c0, int nc, acc_t (*y)[kLanes]) {
    store_chunk(out.data, out_rows, out.s1, c0, nc, y);
  });
}

// dx = y * (dy - sum(dy * y)) / tau, with y regenerated from the logits (recompute: three passes, the
// noise drawn once) or loaded from the saved soft sample.
template <typename scalar_t, typename acc_t>
C10_NOINLINE void bwd_tile(const Problem<acc_t>& problem, const Operand<const scalar_t>& grad,
                           const Operand<const scalar_t>& saved, const Operand<scalar_t>& out,
                           const TileRows& grad_rows, const TileRows& saved_rows, const TileRows& dx_rows,
                           const uint64_t* row_base, bool recompute, acc_t* scratch) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = kLanes / Vec::size();
  const Scratch<acc_t> buf(problem, /*draws_noise=*/recompute, /*backward=*/true, scratch);
  Vec sum[H], dot[H];  // y = buf.y / sum; dot = sum(dy * y)
  if (recompute) {
    const RowArgmax<acc_t> argmax = perturbed_tile(problem, saved, saved_rows, row_base, buf.y, buf.inv_e);
    SoftmaxSums<acc_t> sums;
    exp_pass(problem, argmax, buf.y, buf.inv_e, &grad, &grad_rows, buf.dy, sums);
    std::copy_n(sums.sum, H, sum);
    std::copy_n(sums.dot, H, dot);
  } else {
    for (int h = 0; h < H; ++h) {
      sum[h] = Vec(acc_t(1));
      dot[h] = Vec(acc_t(0));
    }
    for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
      const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
      auto y = reinterpret_cast<acc_t (*)[kLanes]>(buf.y + c0 * kLanes);
      auto dy = reinterpret_cast<acc_t (*)[kLanes]>(buf.dy + c0 * kLanes);
      load_chunk(saved.data, saved_rows, saved.s1, c0, nc, y);
      load_chunk(grad.data, grad_rows, grad.s1, c0, nc, dy);
      for (int c = 0; c < nc; ++c) {
        for (int h = 0; h < H; ++h) {
          const int lane = h * Vec::size();
          dot[h] = at::vec::fmadd(Vec::loadu(dy[c] + lane), Vec::loadu(y[c] + lane), dot[h]);
        }
      }
    }
  }
  const DivideByTau<acc_t> divide(problem.tau);
  normalized_chunks(problem, buf.y, sum, [&](int64_t c0, int nc, acc_t (*y)[kLanes]) {
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < H; ++h) {
        const int lane = h * Vec::size();
        const Vec dy_centered = Vec::loadu(buf.dy + (c0 + c) * kLanes + lane) - dot[h];
        divide(Vec::loadu(y[c] + lane) * dy_centered).store(y[c] + lane);
      }
    }
    store_chunk(out.data, dx_rows, out.s1, c0, nc, y);
  });
}

// The estimator gradient of a tile (estimators.h): each lane's sampled category read from `sample` (the
// forward's, int64 (outer, 1, inner)), the logits and grad loaded into the tile's buffers.
template <typename scalar_t, typename acc_t>
C10_NOINLINE void estimator_bwd_tile(const Problem<acc_t>& problem, Estimator estimator, int64_t rao_samples,
                                     const Operand<const scalar_t>& grad, const Operand<const scalar_t>& logits,
                                     const Operand<const int64_t>& sample_index, const Operand<scalar_t>& out,
                                     const TileRows& grad_rows, const TileRows& logits_rows,
                                     const TileRows& sample_rows, const TileRows& dx_rows, const uint64_t* row_base,
                                     acc_t* scratch) {
  using index_t = typename RowArgmax<acc_t>::index_t;
  index_t sample[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    // The forward's argmax is always in range; a direct call's sample is checked, as it indexes the tile's words.
    const int64_t k = sample_index.data[sample_rows.offset[j]];
    TORCH_CHECK_INDEX(k >= 0 && k < problem.n_cols, "gumbel_fused: sample ", k, " is not a category of ",
                      problem.n_cols);
    sample[j] = static_cast<index_t>(k);
  }
  const EstimatorTile<acc_t> tile(scratch, problem.n_cols);
  for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
    load_chunk(logits.data, logits_rows, logits.s1, c0, nc, reinterpret_cast<acc_t (*)[kLanes]>(tile.x + c0 * kLanes));
    load_chunk(grad.data, grad_rows, grad.s1, c0, nc, reinterpret_cast<acc_t (*)[kLanes]>(tile.dy + c0 * kLanes));
  }
  estimator_grad_tile(problem, estimator, rao_samples, tile, sample, row_base);
  for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
    store_chunk(out.data, dx_rows, out.s1, c0, nc, reinterpret_cast<const acc_t (*)[kLanes]>(tile.dx + c0 * kLanes));
  }
}

// A contiguous (outer, K, inner) output like `t`, backed by transparent huge pages when it is large.
//
// Why: an output this large is a fresh mapping on every call, and faulting it in 4 KiB at a time is a
// sizeable part of the kernel. Measured on 1 thread (THP in "madvise" mode, the usual default): hard forward
// 418 ms with the advice vs 491 ms without on the dVAE case (8, 8192, 32 x 32), 40 vs 50 ms on 64 x 131072;
// the backward from y 451 vs 604 ms on the dVAE case. Torch's own THP_MEM_ALLOC_ENABLE=1, which advises
// every large tensor, gives the same times without it; below 32 MiB the advice measured no gain.
// Why it is safe on memory the allocator owns: the advice is given only from 32 MiB, glibc's largest mmap
// threshold on 64-bit, so with glibc's malloc (under torch's posix_memalign) the tensor is a mapping of its
// own, unmapped with it: the advice never reaches memory handed out again. It only picks the page size:
// where it fails, or THP is off, nothing changes.
at::Tensor new_output(const at::Tensor& t) {
  at::Tensor out = at::empty(t.sizes(), t.options());
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  constexpr size_t kOwnMapping = size_t{32} << 20;  // glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
  if (out.nbytes() >= kOwnMapping) {  // the whole huge pages inside it; the ends stay small pages
    const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const uintptr_t last = (begin + out.nbytes()) & ~(kHugePage - 1);
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

}  // namespace

at::Tensor gumbel_softmax_fwd_cpu(const at::Tensor& logits, int64_t seed, double tau, bool hard,
                                  const std::string& estimator, int64_t rao_samples, at::Tensor* sample) {
  parse_estimator(estimator, hard, rao_samples);  // every estimator's sample is this one: only checked here
  check_operand(logits, "logits");
  TORCH_CHECK_VALUE(hard || !sample,
                    "gumbel_fused::gumbel_softmax_fwd(): only a hard sample has a category to record");
  at::Tensor out = new_output(logits);
  if (sample) {
    TORCH_CHECK_INDEX(logits.size(1) > 0, "gumbel_fused: a sample over dimension 1 of size 0: no category");
    *sample = at::empty({logits.size(0), 1, logits.size(2)}, logits.options().dtype(at::kLong));
  }
  int64_t* sample_rows = sample ? sample->mutable_data_ptr<int64_t>() : nullptr;  // contiguous: row r at r
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "gumbel_softmax_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;  // fp32 math for fp16/bf16/fp32, fp64 for fp64
    const auto problem = make_problem<acc_t>(logits, seed, tau);
    const auto x = operand(logits.const_data_ptr<scalar_t>(), logits);
    const auto y = operand(out.mutable_data_ptr<scalar_t>(), out);
    if (hard && hard_fwd_wide(problem, x, y, sample_rows)) return;
    const int64_t scratch = hard ? 0 : Scratch<acc_t>::elements(problem, /*draws_noise=*/true, /*backward=*/false);
    parallel_tiles(problem, scratch, [&](int64_t r0, int count, const uint64_t* row_base, acc_t* task_scratch) {
      const TileRows x_rows = tile_rows(r0, count, problem.inner, x.s0, x.s2);
      const TileRows y_rows = tile_rows(r0, count, problem.inner, y.s0, y.s2);
      if (hard) {
        hard_fwd_tile(problem, x, y, x_rows, y_rows, row_base, sample_rows ? sample_rows + r0 : nullptr);
      } else {
        soft_fwd_tile(problem, x, y, x_rows, y_rows, row_base, task_scratch);
      }
    });
  });
  return out;
}

at::Tensor gumbel_softmax_bwd_cpu(const at::Tensor& grad, const at::Tensor& saved, int64_t seed,
                                  double tau, bool recompute, const std::string& estimator, int64_t rao_samples,
                                  const std::optional<at::Tensor>& sample) {
  const Estimator kind = parse_estimator(estimator, recompute, rao_samples);
  if (kind != Estimator::kST) check_sample(sample, saved);
  check_operand(grad, "grad");
  check_operand(saved, "saved");
  TORCH_CHECK(grad.sizes() == saved.sizes(), "gumbel_fused: grad ", grad.sizes(), " and saved ", saved.sizes(),
              " must have the same shape");
  TORCH_CHECK(grad.scalar_type() == saved.scalar_type(), "gumbel_fused: grad (", grad.scalar_type(),
              ") and saved (", saved.scalar_type(), ") must have the same dtype");
  at::Tensor out = new_output(saved);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "gumbel_softmax_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto problem = make_problem<acc_t>(saved, seed, tau);
    const auto dy = operand(grad.const_data_ptr<scalar_t>(), grad);
    const auto saved_values = operand(saved.const_data_ptr<scalar_t>(), saved);  // the logits, or y
    const auto dx = operand(out.mutable_data_ptr<scalar_t>(), out);
    const bool st = kind == Estimator::kST;
    const auto sample_index = st ? Operand<const int64_t>{} : operand(sample->const_data_ptr<int64_t>(), *sample);
    const int64_t scratch = st ? Scratch<acc_t>::elements(problem, /*draws_noise=*/recompute, /*backward=*/true)
                               : EstimatorTile<acc_t>::kBuffers * problem.n_cols * kLanes;
    parallel_tiles(problem, scratch, [&](int64_t r0, int count, const uint64_t* row_base, acc_t* task_scratch) {
      const TileRows dy_rows = tile_rows(r0, count, problem.inner, dy.s0, dy.s2);
      const TileRows saved_rows = tile_rows(r0, count, problem.inner, saved_values.s0, saved_values.s2);
      const TileRows dx_rows = tile_rows(r0, count, problem.inner, dx.s0, dx.s2);
      if (st) {
        bwd_tile(problem, dy, saved_values, dx, dy_rows, saved_rows, dx_rows, row_base, recompute, task_scratch);
      } else {
        const TileRows sample_rows = tile_rows(r0, count, problem.inner, sample_index.s0, sample_index.s2);
        estimator_bwd_tile(problem, kind, rao_samples, dy, saved_values, sample_index, dx, dy_rows, saved_rows,
                           sample_rows, dx_rows, row_base, task_scratch);
      }
    });
  });
  return out;
}

// What the estimators' backward takes from the forward's one-hot: a scan of each row to its one. torch.argmax over
// the one-hot cost as much as the forward kernel at the VAE's size (25 us on 2 threads) and 0.56 ms at
// (64, 32, 512), two thirds of it, measured on the 2-core AVX512 VM; the scan stops at the one.
at::Tensor sample_index_cpu(const at::Tensor& one_hot) {
  check_operand(one_hot, "one_hot");
  const int64_t n_cols = one_hot.size(1), inner = one_hot.size(2), rows = one_hot.size(0) * inner;
  TORCH_CHECK_INDEX(n_cols > 0, "gumbel_fused: sample_index of dimension 1 of size 0: no category to find");
  at::Tensor out = at::empty({one_hot.size(0), 1, inner}, one_hot.options().dtype(at::kLong));
  if (rows == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, one_hot.scalar_type(), "sample_index_cpu", [&] {
    const auto y = operand(one_hot.const_data_ptr<scalar_t>(), one_hot);
    int64_t* index = out.mutable_data_ptr<int64_t>();  // contiguous (outer, 1, inner): row r at r
    at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / n_cols), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* row = y.data + (r / inner) * y.s0 + (r % inner) * y.s2;
        int64_t c = 0;
        while (c < n_cols && row[c * y.s1] == scalar_t(0)) ++c;  // NaN compares unequal: a NaN row stops at 0
        index[r] = c < n_cols ? c : 0;  // an all-zero row (no sample of ours) gives 0, as argmax
      }
    });
  });
  return out;
}

}  // namespace gumbel_fused
