// The passes of the gumbel_softmax kernels over a tile of 16 rows (gumbel_softmax.cpp): the perturbed logits
// and their running argmax, the exp pass with its row sums, and the normalized output, a chunk of columns at a
// time. The tile functions there combine them into the hard and soft forward and the backward.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernel_common.h"

namespace gumbel_fused {

// Pass 1 of the soft sample over a tile, into `z_buf` (column-major, K x kLanes), with the row max of z.
// In general z_buf gets z = ((x - m) + g) / tau, m the row max of x (RunningShift), found by a first pass
// that loads x into z_buf. For tau = 1 (the default) g's second log is not needed: exp(z - max z) is
// proportional to exp(x - m) exp(g) = exp(x - m) / E with E = -log1p(-u), so z_buf gets x, `inv_e` gets 1 / E,
// the returned "max" is m, the max of x, and exp_pass takes exp(x - m) / E: the same shift, in one pass
// (exp(x - m) / E <= 1 / 4.7e-10, far from overflow). Only terms more than 87 below m change: their exp
// underflows to 0 where the reference's softmax gives them less than 6e-28 (z - max z <= x - m + 21.5 + 2.9).
template <typename scalar_t, typename acc_t>
RowArgmax<acc_t> perturbed_tile(const Problem<acc_t>& problem, const Operand<const scalar_t>& x, const TileRows& rows,
                                const uint64_t* row_base, acc_t* z_buf, acc_t* inv_e) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = RowArgmax<acc_t>::H;
  const DivideByTau<acc_t> divide(problem.tau);
  RowArgmax<acc_t> argmax;
  Vec shift[H];
  if (!inv_e) {
    Vec x_max[H];
    for (int h = 0; h < H; ++h) x_max[h] = Vec(-std::numeric_limits<acc_t>::infinity());
    for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
      const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
      auto z = reinterpret_cast<acc_t (*)[kLanes]>(z_buf + c0 * kLanes);
      load_chunk(x.data, rows, x.s1, c0, nc, z);
      for (int c = 0; c < nc; ++c) {
        for (int h = 0; h < H; ++h) x_max[h] = at::vec::maximum(x_max[h], Vec::loadu(z[c] + h * Vec::size()));
      }
    }
    for (int h = 0; h < H; ++h) shift[h] = finite_or_zero(x_max[h]);
  }
  uint32_t words[4 * kWordStride];
  for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
    auto z = reinterpret_cast<acc_t (*)[kLanes]>(z_buf + c0 * kLanes);
    if (inv_e) load_chunk(x.data, rows, x.s1, c0, nc, z);
    draw_chunk_words(problem.key, row_base, c0, nc, words);
    // The chunk's noise first, in a loop of its own (see argmax_tile): 1 / E into inv_e, or g.
    acc_t g[kChunk][kLanes];
    if (inv_e) {
      for (int c = 0; c < nc; ++c) {
        for (int h = 0; h < kLanes; h += Vec::size()) {
          const Vec e = exponential_from_words<acc_t>(column_words(words, c) + h);
          (Vec(acc_t(1)) / e).store(inv_e + (c0 + c) * kLanes + h);
        }
      }
    } else {
      for (int c = 0; c < nc; ++c) gumbel_from_words(column_words(words, c), g[c]);
    }
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < H; ++h) {
        const int lane = h * Vec::size();
        if (inv_e) {
          argmax.update(h, Vec::loadu(z[c] + lane), c0 + c);
        } else {
          const Vec v = divide((Vec::loadu(z[c] + lane) - shift[h]) + Vec::loadu(g[c] + lane));
          v.store(z[c] + lane);
          argmax.update(h, v, c0 + c);
        }
      }
    }
  }
  return argmax;
}

// Pass 1 of the hard forward over a tile: the row argmax of z, with g's second log pruned (argmax_step), the
// logits shifted by their running max (RunningShift), updated a chunk at a time.
template <typename scalar_t, typename acc_t>
RowArgmax<acc_t> argmax_tile(const Problem<acc_t>& problem, const Operand<const scalar_t>& x, const TileRows& rows,
                             const uint64_t* row_base) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = RowArgmax<acc_t>::H;
  const DivideByTau<acc_t> divide(problem.tau);
  RowArgmax<acc_t> argmax;
  RunningShift<acc_t> shift;
  uint32_t words[4 * kWordStride];
  acc_t x_chunk[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
    load_chunk(x.data, rows, x.s1, c0, nc, x_chunk);
    for (int h = 0; h < H; ++h) {
      Vec chunk_max(-std::numeric_limits<acc_t>::infinity());
      for (int c = 0; c < nc; ++c) chunk_max = at::vec::maximum(chunk_max, Vec::loadu(x_chunk[c] + h * Vec::size()));
      shift.update(h, chunk_max, argmax, divide);
    }
    draw_chunk_words(problem.key, row_base, c0, nc, words);
    const bool prune = can_prune(problem.tau, c0);
    acc_t g[kChunk][kLanes];
    if (!prune) {
      // Unpruned, the chunk's noise comes first, in a loop of its own: its logs then depend on nothing but the
      // words, and the core overlaps their long FMA chains instead of waiting on the argmax's compare-and-blend
      // between them (measured: 18% off the hard forward at the VAE's size, one thread, AVX512 Zen 4).
      for (int c = 0; c < nc; ++c) gumbel_from_words(column_words(words, c), g[c]);
    }
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < H; ++h) {
        const int lane = h * Vec::size();
        const Vec shifted = Vec::loadu(x_chunk[c] + lane) - shift.shift[h];
        if (prune) {
          argmax_step(argmax, h, shifted, column_words(words, c) + lane, c0 + c, divide, true);
        } else {
          argmax.update(h, divide(shifted + Vec::loadu(g[c] + lane)), c0 + c);
        }
      }
    }
  }
  return argmax;
}

// Pass 2 of the soft sample of a tile: e = exp(z - m) in place in `y_buf`, with its row sums into `sums`; and,
// when `grad` is given, the backward's sum(grad * y) = sum(grad * e) / sum(e) (sums.dot) without a pass over y,
// keeping grad in `dy_buf` for the last pass. NaN and non-finite rows need no special case: they make the sum
// NaN, and so the whole row NaN, as in the reference.
template <typename scalar_t, typename acc_t>
void exp_pass(const Problem<acc_t>& problem, const RowArgmax<acc_t>& argmax, acc_t* y_buf, const acc_t* inv_e,
              const Operand<const scalar_t>* grad, const TileRows* grad_rows, acc_t* dy_buf, SoftmaxSums<acc_t>& sums) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = kLanes / Vec::size();
  for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
    if (grad) {
      load_chunk(grad->data, *grad_rows, grad->s1, c0, nc, reinterpret_cast<acc_t (*)[kLanes]>(dy_buf + c0 * kLanes));
    }
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < H; ++h) {
        const int64_t index = (c0 + c) * kLanes + h * Vec::size();
        Vec e = (Vec::loadu(y_buf + index) - argmax.best[h]).exp();  // Sleef (exp_u20 is 20 ulp, and maps NaN to inf)
        if (inv_e) e = e * Vec::loadu(inv_e + index);                // tau = 1: exp(x - m) / E, see perturbed_tile
        e.store(y_buf + index);
        if (grad) {
          sums.add(h, e, Vec::loadu(dy_buf + index));
        } else {
          sums.add(h, e);
        }
      }
    }
    sums.end_chunk();
  }
  sums.finish();
}

// The per-task scratch of the soft sample and the backward: column-major K x kLanes buffers, only those the
// pass uses. `y` always: z, then exp(z - m), then (in the backward) dx. `inv_e`: 1 / E, when the pass draws
// the noise with tau = 1 (see perturbed_tile). `dy`: the backward's grad, loaded once. So the soft forward
// needs one or two buffers, the backward two or three; the hard forward none.
template <typename acc_t>
struct Scratch {
  acc_t* y = nullptr;
  acc_t* inv_e = nullptr;
  acc_t* dy = nullptr;

  static int64_t elements(const Problem<acc_t>& problem, bool draws_noise, bool backward) {
    const int buffers = 1 + (draws_noise && problem.tau == acc_t(1)) + backward;
    return buffers * problem.n_cols * kLanes;
  }
  Scratch(const Problem<acc_t>& problem, bool draws_noise, bool backward, acc_t* base) {
    const int64_t buffer = problem.n_cols * kLanes;
    y = base;
    base += buffer;
    if (draws_noise && problem.tau == acc_t(1)) {
      inv_e = base;
      base += buffer;
    }
    if (backward) dy = base;
  }
};

// Final pass of the soft forward and the backward: y = e / sum per chunk, handed to fn(c0, nc, y) in a
// chunk buffer (which fn may overwrite) for it to combine and store.
template <typename acc_t, typename Fn>
void normalized_chunks(const Problem<acc_t>& problem, const acc_t* y_buf, const Vectorized<acc_t>* sum, const Fn& fn) {
  using Vec = Vectorized<acc_t>;
  acc_t y[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < kLanes; h += Vec::size()) {
        // A division, not a multiply by 1 / sum: it keeps a row's only finite entry at exactly 1 (K = 1).
        (Vec::loadu(y_buf + (c0 + c) * kLanes + h) / sum[h / Vec::size()]).store(y[c] + h);
      }
    }
    fn(c0, nc, y);
  }
}

}  // namespace gumbel_fused
