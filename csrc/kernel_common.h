// Types shared by the CPU kernels (gumbel_softmax.cpp, softmax_passes.h, hard_wide.h, sampling.h): operands,
// the per-call problem and the checks of its tensors, the per-row running argmax, and the division by tau.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>

#include "noise.h"
#include "tile.h"

namespace gumbel_fused {

using at::vec::Vectorized;

// ~16K elements a task: a task costs ~10-40 us, above the few us of waking an OpenMP thread, and problems
// below it stay on the calling thread. The VAE's 2000 x 10 makes two tasks: 31.5 us on 2 threads against 62.7
// on one, called back to back; called between eager ops that leave the second thread asleep, it took 44-61 us,
// as long as one thread (57 us), since the wake-up cost what the thread saved (AVX512 Zen 4 VM, fp32 hard).
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
  acc_t tau;  // the temperature: tau of gumbel_softmax, T of the sampling ops
};

template <typename acc_t>
Problem<acc_t> make_problem(const at::Tensor& t, int64_t seed, double tau) {
  return {t.size(1), t.size(2), t.size(0) * t.size(2), noise_key(seed, t.size(1)), static_cast<acc_t>(tau)};
}

// Runs fn(r0, count, row_base, scratch) on every tile of 16 rows, in parallel. `scratch` is a per-task
// buffer of `scratch_elements` (null for none), reused by the task's tiles. Every tiled kernel runs through it.
template <typename acc_t, typename Fn>
void parallel_tiles(const Problem<acc_t>& problem, int64_t scratch_elements, const Fn& fn) {
  const int64_t tiles = (problem.rows + kLanes - 1) / kLanes;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / (kLanes * problem.n_cols));
  at::parallel_for(0, tiles, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> scratch(scratch_elements > 0 ? new acc_t[scratch_elements] : nullptr);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r0 = t * kLanes;
      const int count = static_cast<int>(std::min<int64_t>(kLanes, problem.rows - r0));
      TORCH_INTERNAL_ASSERT(count >= 1 && count <= kLanes);
      uint64_t row_base[kLanes];  // counter of (row, column 0): n = r * ceil(K / 4)
      for (int j = 0; j < kLanes; ++j) row_base[j] = static_cast<uint64_t>(r0 + j) * problem.key.groups;
      fn(r0, count, row_base, scratch.get());
    }
  });
}

// Checks an (outer, K, inner) operand of an entry point: the op layer builds these views, so a failure here is
// a bug or a direct call, reported as such.
inline void check_operand(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 3, "gumbel_fused: ", name, " must be a 3-D (outer, K, inner) view, got ", t.dim(), "-D");
  TORCH_CHECK(t.device().is_cpu(), "gumbel_fused: ", name, " must be a CPU tensor, got ", t.device());
  const auto dtype = t.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
              "gumbel_fused: ", name, " must be float16, bfloat16, float32 or float64, got ", dtype);
  TORCH_CHECK(t.size(1) <= std::numeric_limits<int32_t>::max(), "gumbel_fused: at most 2^31 - 1 categories");
}

// Per-row state of the pass over z = (x + g) / tau, one vector of lanes at a time.
template <typename acc_t, int L = kLanes>
struct RowArgmax {
  using Vec = Vectorized<acc_t>;
  using index_t = at::vec::int_same_size_t<acc_t>;  // same lane count as Vec, so masks carry over
  using Idx = Vectorized<index_t>;
  static constexpr int H = L / Vec::size();

  Vec best[H];  // running max of z; NaN-propagating, so a NaN in the row leaves NaN here
  Idx arg[H];   // first column holding the max (strict >: ties keep the first index, as argmax does)

  RowArgmax() {
    for (int h = 0; h < H; ++h) {
      best[h] = Vec(-std::numeric_limits<acc_t>::infinity());
      arg[h] = Idx(index_t(0));
    }
  }
  void update(int h, const Vec& z, int64_t col) {
    arg[h] = Idx::blendv(arg[h], Idx(static_cast<index_t>(col)), at::vec::cast<index_t>(z > best[h]));
    best[h] = at::vec::maximum(best[h], z);
  }
  // Per lane: the max of z, and the column to set in a one-hot (-1 where the row is undefined). The
  // reference's softmax is NaN on a whole row when its max is NaN or infinite (+inf - +inf, or all -inf:
  // -inf - -inf), and its hard sample keeps that NaN rather than a one-hot.
  void result(acc_t* max, index_t* hot) const {
    for (int h = 0; h < H; ++h) {
      best[h].store(max + h * Vec::size());
      arg[h].store(hot + h * Vec::size());
    }
    for (int j = 0; j < L; ++j) hot[j] = std::isfinite(max[j]) ? hot[j] : index_t(-1);
  }
};

// The sampled category of `count` rows from RowArgmax::result's `hot`: what sample_index_cpu finds in the one-hot
// (0 for an undefined row, which is all NaN there, as torch.argmax gives).
template <typename index_t>
C10_ALWAYS_INLINE void record_sample(const index_t* hot, int count, int64_t* sample) {
  for (int j = 0; j < count; ++j) sample[j] = hot[j] >= 0 ? hot[j] : 0;
}

// v / tau in the math dtype, as in z = (x + g) / tau. A division rather than a multiply by 1 / tau, as the
// reference does, so that z ties exactly where its ties are; v / 1 == v exactly, so tau = 1 (the
// default) skips it.
template <typename acc_t>
struct DivideByTau {
  Vectorized<acc_t> tau;
  bool unit_tau;
  explicit DivideByTau(acc_t t) : tau(t), unit_tau(t == acc_t(1)) {}
  Vectorized<acc_t> operator()(const Vectorized<acc_t>& v) const { return unit_tau ? v : v / tau; }
};

// v where v is finite, 0 where it is NaN or infinite (v - v is 0 exactly for finite v, NaN otherwise).
template <typename acc_t>
C10_ALWAYS_INLINE Vectorized<acc_t> finite_or_zero(const Vectorized<acc_t>& v) {
  using Vec = Vectorized<acc_t>;
  return Vec::blendv(Vec(acc_t(0)), v, (v - v) == Vec(acc_t(0)));
}

// The shift subtracted from the logits before the noise is added: z = ((x - m) + g) / tau with m the row max
// of x, or 0 where that is not finite (such rows are NaN anyway), as reference/gumbel_softmax.py's row_shift.
// Unshifted, x + g rounds to x's precision, and at |x| = 1e8 fp32's spacing (8) swallows g. The hard forward
// reads a row once, so it shifts by the running max instead: when that grows from s to s', the z seen so far
// are (s' - s) / tau too high, and the running max of z is lowered by as much (a common shift leaves the
// argmax alone; the re-based max differs from a recomputed one by rounding only).
template <typename acc_t, int L = kLanes>
struct RunningShift {
  using Vec = Vectorized<acc_t>;
  static constexpr int H = L / Vec::size();

  Vec x_max[H];  // running max of x; NaN-propagating, and a NaN row is NaN whatever its shift
  Vec shift[H];  // finite_or_zero(x_max)

  RunningShift() {
    for (int h = 0; h < H; ++h) {
      x_max[h] = Vec(-std::numeric_limits<acc_t>::infinity());
      shift[h] = Vec(acc_t(0));
    }
  }
  // Folds the max of the next columns' x into lane vector h and re-bases `argmax` (best - 0 == best: a
  // shift that does not grow changes nothing, -inf included).
  void update(int h, const Vec& columns_max, RowArgmax<acc_t, L>& argmax, const DivideByTau<acc_t>& divide) {
    x_max[h] = at::vec::maximum(x_max[h], columns_max);
    const Vec new_shift = finite_or_zero(x_max[h]);
    argmax.best[h] = argmax.best[h] - divide(new_shift - shift[h]);
    shift[h] = new_shift;
  }
};

// Pairwise (cascade) summation of a stream of vectors: level l holds the sum of 2^l consecutive inputs, like
// the digits of a binary counter, so each input goes through at most log2(n) additions and the total is off
// by O(log n) ulps rather than the O(n) of a running sum (Higham, "Accuracy and Stability of Numerical
// Algorithms", 2002, section 4.2). Summed serially, a row's exp terms at K = 2**24 were off by 5e-2.
template <typename Vec>
class PairwiseSum {
 public:
  void add(Vec v) {
    int level = 0;
    for (uint64_t n = count_++; n & 1; n >>= 1) v = partial(level++) + v;
    v.store(partial_[level]);
  }
  // The levels in use, smallest first: they grow geometrically, so this adds about 2 ulps.
  Vec total() const {
    Vec sum(0);
    int level = 0;
    for (uint64_t n = count_; n != 0; n >>= 1, ++level) {
      if (n & 1) sum = sum + partial(level);
    }
    return sum;
  }

 private:
  Vec partial(int level) const { return Vec::loadu(partial_[level]); }

  // Raw lanes, left uninitialized (a level is written before it is read), not an array of Vec: at::vec's
  // AVX2/AVX512 Vectorized zeroes itself when constructed, and the kernels make four of these a tile, so 40
  // levels of it wrote 5 KiB a tile of 16 x 10 elements. Measured: 13% of the Gumbel-Rao backward's time at the
  // VAE's size, where it makes them once a repeat.
  typename Vec::value_type partial_[40][Vec::size()];  // inputs are chunk sums of a row: < 2^31 / kChunk < 2^40
  uint64_t count_ = 0;
};

// The sums of a softmax's weights w and of dy * w over a row, lane by lane: a running sum within a chunk of
// kChunk columns, the chunk sums pairwise (PairwiseSum): at most kChunk - 1 + log2(K / kChunk) roundings of a
// row's sum, where a running sum over the row had K - 1. Without it a 4097-column fp32 row's estimator gradient
// was 4e-6 off the fp64 one, twenty times the reference's error. The soft sample's pass (exp_pass) and every
// estimator's softmax sum through it.
template <typename acc_t>
struct SoftmaxSums {
  using Vec = Vectorized<acc_t>;
  static constexpr int H = kLanes / Vec::size();
  Vec sum[H], dot[H], chunk_sum[H], chunk_dot[H];
  PairwiseSum<Vec> sums[H], dots[H];

  SoftmaxSums() {
    for (int h = 0; h < H; ++h) chunk_sum[h] = chunk_dot[h] = Vec(acc_t(0));
  }
  void add(int h, const Vec& w) { chunk_sum[h] = chunk_sum[h] + w; }
  void add(int h, const Vec& w, const Vec& dy) {
    add(h, w);
    chunk_dot[h] = at::vec::fmadd(dy, w, chunk_dot[h]);
  }
  void end_chunk() {
    for (int h = 0; h < H; ++h) {
      sums[h].add(chunk_sum[h]);
      dots[h].add(chunk_dot[h]);
      chunk_sum[h] = chunk_dot[h] = Vec(acc_t(0));
    }
  }
  // After the last chunk: sum, and dot = <dy, p> = sum(dy * w) / sum(w), p the normalized softmax (0 when only
  // weights were added).
  void finish() {
    for (int h = 0; h < H; ++h) {
      sum[h] = sums[h].total();
      dot[h] = dots[h].total() / sum[h];
    }
  }
};

// One vector of lanes of the hard forward: fold z = (x + g) / tau into the running argmax, for the noise of
// the Vec::size() words w and the logits x, already shifted (RunningShift). The pruning (`prune`: fp32 and
// tau > 0): g <= gumbel_upper_bound(w) (noise.h), so z <= (x + bound) / tau, adding, dividing by a positive
// tau and rounding being monotone. When every lane's bound is below its row's running max, no lane can change
// the argmax, and both logs of g are skipped. Once a few columns are in, a new max needs g near the top of its
// range, so for typical logits most vectors skip them. The result is the exact argmax of the full
// computation, ties included: a skipped z is strictly below the max.
template <typename acc_t, int L>
C10_ALWAYS_INLINE void argmax_step(RowArgmax<acc_t, L>& argmax, int h, const Vectorized<acc_t>& x, const uint32_t* w,
                                   int64_t col, const DivideByTau<acc_t>& divide, bool prune) {
  if constexpr (std::is_same_v<acc_t, float>) {
    // zero_mask: a bit per lane where (bound < best) is false, i.e. a lane that might win.
    if (prune && (divide(x + gumbel_upper_bound(w)) < argmax.best[h]).zero_mask() == 0) return;
    argmax.update(h, divide(x + gumbel_from_exponential(exponential_from_words<float>(w))), col);
  } else {
    argmax.update(h, divide(x + gumbel_from_exponential(exponential_from_words<acc_t>(w))), col);
  }
}

// Whether argmax_step may prune at column `col`: the bound exists for fp32 only, and the division keeps
// its order for tau > 0. Not in the first kChunk columns: the running max is still low there, so nearly
// every vector would fail the test, and small K (the VAE's 10) would pay for the bound for nothing.
template <typename acc_t>
bool can_prune(acc_t tau, int64_t col) {
  return std::is_same_v<acc_t, float> && tau > 0 && col >= kChunk;
}

}  // namespace gumbel_fused
