// The hard forward for channel-first layouts, such as DALL-E's dVAE: (B, K, H*W) logits, softmax over K,
// spatial positions contiguous. The 16-row tiles of gumbel_softmax.cpp read a 64-byte line per column
// there, and the columns are H*W * 4 bytes apart (4 KiB for 32x32): every access is a new page, which the
// hardware prefetchers do not cross and the TLB does not hold (K = 8192 pages a tile). Here a tile is
// kWide = 256 consecutive positions of one image instead: a column is 1 KiB contiguous, read as a stream,
// and the output column is zeroed in the same pass (the ones are set at the end), so the logits and the
// output are each swept once. Measured on the (8, 8192, 32, 32) case: ~20% faster than 16-row tiles.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernel_common.h"

namespace gumbel_fused {

constexpr int kWide = 256;  // positions a wide tile; 4 Philox calls of 64 counters per column group

// Lanes of fp32 math from kWide-contiguous elements (fp16/bf16 widen exactly).
template <typename scalar_t>
C10_ALWAYS_INLINE Vectorized<float> load_float(const scalar_t* p) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    return Vectorized<float>::loadu(p);
  } else {
    float lanes[Vectorized<float>::size()];
    for (int j = 0; j < Vectorized<float>::size(); ++j) lanes[j] = static_cast<float>(p[j]);
    return Vectorized<float>::loadu(lanes);
  }
}

// The argmax of z over the K columns of positions i0 .. i0 + kWide - 1 of image o (pruned: argmax_step; the
// logits shifted by their running max: RunningShift), and the one-hot written as it goes; each row's category
// into `sample` (row r at sample[r]) unless it is null.
template <typename scalar_t>
void hard_wide_tile(const Problem<float>& problem, const Operand<const scalar_t>& x, const Operand<scalar_t>& out,
                    int64_t o, int64_t i0, int64_t* sample) {
  using Vec = Vectorized<float>;
  constexpr int kBlock = 64;  // counters a Philox call: its register blocking (philox.h)
  const DivideByTau<float> divide(problem.tau);
  const int64_t r0 = o * problem.inner + i0;
  RowArgmax<float, kWide> argmax;
  RunningShift<float, kWide> shift;
  uint32_t words[4 * kWide];  // word k of counter (r0 + j) * groups + q at words[k * kWide + j]
  for (int64_t q = 0; q < problem.key.groups; ++q) {
    for (int b = 0; b < kWide; b += kBlock) {
      uint32_t n_lo[kBlock], n_hi[kBlock];
      for (int j = 0; j < kBlock; ++j) {
        const uint64_t n = static_cast<uint64_t>(r0 + b + j) * problem.key.groups + static_cast<uint64_t>(q);
        n_lo[j] = static_cast<uint32_t>(n);
        n_hi[j] = static_cast<uint32_t>(n >> 32);
      }
      philox4x32_10<kBlock>(problem.key.key_lo, problem.key.key_hi, n_lo, n_hi, words + b, kWide);
    }
    const int columns = static_cast<int>(std::min<int64_t>(4, problem.n_cols - 4 * q));
    const scalar_t* x_cols[4];
    for (int k = 0; k < columns; ++k) {
      const int64_t c = 4 * q + k;
      x_cols[k] = x.data + o * x.s0 + c * x.s1 + i0;
      prefetch_ahead(x_cols[k], 4 * x.s1);  // the next group's column: a new page, so no hardware prefetch
      std::fill_n(out.data + o * out.s0 + c * out.s1 + i0, kWide, scalar_t(0));
    }
    const bool prune = can_prune(problem.tau, 4 * q);  // kChunk is a multiple of 4: the same for the group
    for (int h = 0; h < RowArgmax<float, kWide>::H; ++h) {
      const int lane = h * Vec::size();
      Vec x_group[4], group_max(-std::numeric_limits<float>::infinity());
      for (int k = 0; k < columns; ++k) {
        x_group[k] = load_float(x_cols[k] + lane);
        group_max = at::vec::maximum(group_max, x_group[k]);
      }
      shift.update(h, group_max, argmax, divide);  // the logits' running shift, a group of 4 columns at a time
      for (int k = 0; k < columns; ++k) {
        argmax_step(argmax, h, x_group[k] - shift.shift[h], words + k * kWide + lane, 4 * q + k, divide, prune);
      }
    }
  }
  float max[kWide];
  int32_t hot[kWide];
  argmax.result(max, hot);
  if (sample) record_sample(hot, kWide, sample + r0);
  for (int j = 0; j < kWide; ++j) {
    scalar_t* y = out.data + o * out.s0 + (i0 + j) * out.s2;
    if (hot[j] >= 0) {
      y[hot[j] * out.s1] = scalar_t(1);
    } else {  // an undefined row (NaN, or no finite max) is all NaN, as in the reference
      for (int64_t c = 0; c < problem.n_cols; ++c) y[c * out.s1] = std::numeric_limits<scalar_t>::quiet_NaN();
    }
  }
}

// Runs the wide hard forward when it applies (fp32 math, positions contiguous in whole wide tiles) and
// says whether it did; the caller runs the 16-row tiles otherwise.
template <typename scalar_t, typename acc_t>
bool hard_fwd_wide(const Problem<acc_t>& problem, const Operand<const scalar_t>& x, const Operand<scalar_t>& out,
                   int64_t* sample) {
  if constexpr (!std::is_same_v<acc_t, float>) {
    return false;
  } else {
    if (x.s2 != 1 || problem.inner % kWide != 0) return false;
    const int64_t per_image = problem.inner / kWide;
    const int64_t grain = std::max<int64_t>(1, kGrainElements / (kWide * problem.n_cols));
    at::parallel_for(0, problem.rows / kWide, grain, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        hard_wide_tile(problem, x, out, t / per_image, t % per_image * kWide, sample);
      }
    });
    return true;
  }
}

}  // namespace gumbel_fused
