// Gradient estimators of the hard sample other than straight-through Gumbel-softmax, on one tile of kLanes
// rows held column-major (K x kLanes, the math dtype), as the backward's other passes hold them. The
// formulas and their sources are in gumbel_fused/reference/estimators.py; in short, with
// J(p) dy = p * (dy - <dy, p>), k the sampled category and D its one-hot:
//
//   plain_st:    J(q) dy / tau                                  q = softmax(x / tau)
//   reinmax:     (D + q) * (dy - (dy_k + <dy, q>) / 2) - J(pi) dy / 2,     pi = softmax(x)
//   gst:         J(s) dy / tau                                  s = softmax(x' / tau), x' gapped
//   gumbel_rao:  (1/R) sum_r J(p_r) dy / tau                    p_r: R conditional Gumbel draws
//
// Every softmax here has its maximum known up front (max(x) for q, pi, s; weight 1 at k for p_r), so a
// pass gives its sum and dot product with dy directly, and one more writes the gradient.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <string>

#include "kernel_common.h"

namespace gumbel_fused {

// The positions of gumbel_fused.reference.estimators.ESTIMATORS.
enum class Estimator : int { kST = 0, kReinMax, kGumbelRao, kGST, kPlainST };

constexpr const char* kEstimatorNames[] = {"st", "reinmax", "gumbel_rao", "gst", "plain_st"};
constexpr double kGstGap = 1.0;          // reference.estimators.GST_GAP: GST-1.0
constexpr uint32_t kRaoFirstStream = 1;  // reference.estimators.RAO_FIRST_STREAM: repeat r draws stream 1 + r

// The estimator called `name`, checked as the Python layers check it: a known name, hard mode for all but
// "st", at least one Gumbel-Rao sample. Raises ValueError otherwise.
inline Estimator parse_estimator(const std::string& name, bool hard, int64_t rao_samples) {
  for (int i = 0; i < static_cast<int>(std::size(kEstimatorNames)); ++i) {
    if (name != kEstimatorNames[i]) continue;
    TORCH_CHECK_VALUE(i == 0 || hard, "gumbel_fused: estimator '", name, "' requires hard=True");
    TORCH_CHECK_VALUE(rao_samples >= 1, "gumbel_fused: rao_samples must be a positive integer, got ", rao_samples);
    return static_cast<Estimator>(i);
  }
  TORCH_CHECK_VALUE(false, "gumbel_fused: unknown estimator '", name,
                    "', expected one of 'st', 'reinmax', 'gumbel_rao', 'gst', 'plain_st'");
}

// The backward of an estimator needs the forward's sampled category: an int64 (outer, 1, inner) tensor of the
// logits' rows. ValueError when it is missing, RuntimeError for a malformed one (a bug or a direct call).
inline void check_sample(const std::optional<at::Tensor>& sample, const at::Tensor& logits) {
  TORCH_CHECK_VALUE(sample.has_value(), "gumbel_fused: the estimators' backward needs the forward's sample");
  TORCH_CHECK(sample->dim() == 3 && sample->size(0) == logits.size(0) && sample->size(1) == 1 &&
                  sample->size(2) == logits.size(2) && sample->scalar_type() == at::kLong && sample->device().is_cpu(),
              "gumbel_fused: sample must be an int64 (outer, 1, inner) CPU tensor, got ", sample->sizes(), " ",
              sample->scalar_type());
}

// The column-major K x kLanes buffers of one tile.
template <typename acc_t>
struct EstimatorTile {
  static constexpr int kBuffers = 4;
  acc_t* x;   // the logits; Gumbel-Rao turns them into pi = softmax(x)
  acc_t* dy;  // the incoming gradient
  acc_t* w;   // a softmax's weights
  acc_t* dx;  // the gradient (ReinMax: first pi's weights; Gumbel-Rao: the running sum over repeats)
  EstimatorTile(acc_t* scratch, int64_t n_cols)
      : x(scratch),
        dy(scratch + n_cols * kLanes),
        w(scratch + 2 * n_cols * kLanes),
        dx(scratch + 3 * n_cols * kLanes) {}
};

// E_k of each lane for one Gumbel-Rao repeat: the contract's Exp(1) noise of `stream` at the lane's sampled
// column k (word k_j % 4 of counter row_base[j] + k_j / 4). A row of one chunk (K <= kChunk) has all its words
// drawn for the weights anyway, `chunk_words` (draw_chunk_words' layout), and E_k is read from them; a longer
// row's come from one Philox call for the kLanes counters (at K = 10 that call was a quarter of the repeat's).
template <typename acc_t>
void sampled_exponentials(const NoiseKey& key, const uint64_t* row_base, const at::vec::int_same_size_t<acc_t>* sample,
                          uint32_t stream, const uint32_t* chunk_words, Vectorized<acc_t>* e_k) {
  uint32_t at_sample[kLanes];
  if (chunk_words) {
    for (int j = 0; j < kLanes; ++j) at_sample[j] = column_words(chunk_words, static_cast<int>(sample[j]))[j];
  } else {
    uint32_t n_lo[kLanes], n_hi[kLanes], words[4 * kLanes];
    for (int j = 0; j < kLanes; ++j) {
      const uint64_t n = row_base[j] + static_cast<uint64_t>(sample[j] / 4);
      n_lo[j] = static_cast<uint32_t>(n);
      n_hi[j] = static_cast<uint32_t>(n >> 32);
    }
    philox4x32_10<kLanes>(key.key_lo, key.key_hi, n_lo, n_hi, words, kLanes, stream);
    for (int j = 0; j < kLanes; ++j) at_sample[j] = words[(sample[j] % 4) * kLanes + j];
  }
  for (int h = 0; h < kLanes / Vectorized<acc_t>::size(); ++h) {
    e_k[h] = exponential_from_words<acc_t>(at_sample + h * Vectorized<acc_t>::size());
  }
}

// The estimator gradient of one tile, into tile.dx. `sample[j]` is lane j's category k (plain_st reads none);
// lanes whose logits have a NaN or no finite maximum get NaN, as their forward does.
template <typename acc_t>
void estimator_grad_tile(const Problem<acc_t>& problem, Estimator estimator, int64_t rao_samples,
                         const EstimatorTile<acc_t>& tile, const at::vec::int_same_size_t<acc_t>* sample,
                         const uint64_t* row_base) {
  using Vec = Vectorized<acc_t>;
  using index_t = at::vec::int_same_size_t<acc_t>;
  using Idx = Vectorized<index_t>;
  using Sums = SoftmaxSums<acc_t>;
  constexpr int H = kLanes / Vec::size();
  const int64_t n_cols = problem.n_cols;
  const Vec zero(acc_t(0)), one(acc_t(1)), half(acc_t(0.5)), tau(problem.tau);
  const Vec nan(std::numeric_limits<acc_t>::quiet_NaN());
  const DivideByTau<acc_t> divide(problem.tau);
  // Calls fn(column, h, offset of the vector) over the tile, column by column, and end_chunk() on each of
  // `sums` after every kChunk columns.
  auto for_each = [n_cols](auto&& fn, std::initializer_list<Sums*> sums = {}) {
    for (int64_t c0 = 0; c0 < n_cols; c0 += kChunk) {
      for (int64_t c = c0; c < std::min<int64_t>(c0 + kChunk, n_cols); ++c) {
        for (int h = 0; h < H; ++h) fn(c, h, c * kLanes + h * Vec::size());
      }
      for (Sums* s : sums) s->end_chunk();
    }
  };
  auto load = [](const acc_t* buf, int64_t offset) { return Vec::loadu(buf + offset); };
  Idx k[H];
  for (int h = 0; h < H; ++h) k[h] = Idx::loadu(sample + h * Vec::size());
  auto is_sampled = [&](int64_t c, int h) { return at::vec::cast<acc_t>(k[h] == Idx(static_cast<index_t>(c))); };

  // max(x), NaN-propagating; invalid lanes (a NaN, or an infinite max) shift by 0 and end up NaN.
  Vec shift[H], invalid[H];
  for (int h = 0; h < H; ++h) shift[h] = Vec(-std::numeric_limits<acc_t>::infinity());
  for_each([&](int64_t, int h, int64_t i) { shift[h] = at::vec::maximum(shift[h], load(tile.x, i)); });
  for (int h = 0; h < H; ++h) {
    invalid[h] = (shift[h] - shift[h]) != zero;  // an unordered compare: true for NaN and +-inf
    shift[h] = finite_or_zero(shift[h]);
  }

  if (estimator == Estimator::kGumbelRao) {
    // pi = softmax(x), in place of x; dx starts the sum over repeats.
    Sums pi_sums;
    for_each([&](int64_t, int h, int64_t i) {
      const Vec e = (load(tile.x, i) - shift[h]).exp();
      e.store(tile.x + i);
      pi_sums.add(h, e, zero);
      zero.store(tile.dx + i);
    }, {&pi_sums});
    pi_sums.finish();
    for_each([&](int64_t, int h, int64_t i) { (load(tile.x, i) / pi_sums.sum[h]).store(tile.x + i); });
    uint32_t words[4 * kWordStride];
    const bool one_chunk = n_cols <= kChunk;
    for (int64_t repeat = 0; repeat < rao_samples; ++repeat) {
      const auto stream = static_cast<uint32_t>(kRaoFirstStream + repeat);
      if (one_chunk) draw_chunk_words(problem.key, row_base, 0, static_cast<int>(n_cols), words, stream);
      Vec e_k[H];
      sampled_exponentials<acc_t>(problem.key, row_base, sample, stream, one_chunk ? words : nullptr, e_k);
      // The repeat's Exp(1) noise E, drawn a chunk at a time, and its weights:
      // w_j = exp((z_j - z_k) / tau) = (pi_j E_k / (E_j + pi_j E_k)) ** (1 / tau), w_k = 1; Sleef's log for
      // tau != 1, which maps a weight of 0 (pi_j = 0) to -inf and so back to 0.
      Sums sums;
      for (int64_t c0 = 0; c0 < n_cols; c0 += kChunk) {
        const int nc = static_cast<int>(std::min<int64_t>(kChunk, n_cols - c0));
        if (!one_chunk) draw_chunk_words(problem.key, row_base, c0, nc, words, stream);
        for (int c = 0; c < nc; ++c) {
          for (int h = 0; h < H; ++h) {
            const int64_t i = (c0 + c) * kLanes + h * Vec::size();
            const Vec e = exponential_from_words<acc_t>(column_words(words, c) + h * Vec::size());
            const Vec pi_e_k = load(tile.x, i) * e_k[h];
            Vec w = Vec::blendv(pi_e_k / (e + pi_e_k), one, is_sampled(c0 + c, h));
            if (!divide.unit_tau) w = (w.log() / tau).exp();
            w.store(tile.w + i);
            sums.add(h, w, load(tile.dy, i));
          }
        }
        sums.end_chunk();
      }
      sums.finish();
      // p = w / sum as w times a reciprocal: one division a row, not one an element (1 ulp apart; the repeats'
      // mean is compared with the fp64 reference's to the usual tolerance).
      Vec inv_sum[H];
      for (int h = 0; h < H; ++h) inv_sum[h] = one / sums.sum[h];
      for_each([&](int64_t, int h, int64_t i) {
        const Vec p = load(tile.w, i) * inv_sum[h];
        at::vec::fmadd(p, load(tile.dy, i) - sums.dot[h], load(tile.dx, i)).store(tile.dx + i);
      });
    }
    const Vec scale(acc_t(1) / static_cast<acc_t>(rao_samples));
    for_each([&](int64_t, int h, int64_t i) {
      Vec::blendv(divide(load(tile.dx, i) * scale), nan, invalid[h]).store(tile.dx + i);
    });
    return;
  }

  // q = softmax(x / tau) (plain_st, reinmax) or s = softmax(x' / tau) (gst), whose gapped logits lie
  // x'_k - max = 0 and x'_j - max = min(x_j - max, -gap) below the max; and pi = softmax(x) (reinmax) in dx.
  const Vec neg_gap(acc_t(-kGstGap));
  const bool gst = estimator == Estimator::kGST, reinmax = estimator == Estimator::kReinMax;
  Sums sums, pi_sums;
  Vec dy_k[H];
  for (int h = 0; h < H; ++h) dy_k[h] = zero;
  for_each([&](int64_t c, int h, int64_t i) {
    const Vec x = load(tile.x, i) - shift[h], dy = load(tile.dy, i);
    const Vec w = divide(gst ? Vec::blendv(at::vec::minimum(x, neg_gap), zero, is_sampled(c, h)) : x).exp();
    w.store(tile.w + i);
    sums.add(h, w, dy);
    if (reinmax) {
      const Vec pi = divide.unit_tau ? w : x.exp();
      pi.store(tile.dx + i);
      pi_sums.add(h, pi, dy);
      dy_k[h] = Vec::blendv(dy_k[h], dy, is_sampled(c, h));
    }
  }, {&sums, &pi_sums});
  sums.finish();
  pi_sums.finish();  // 0 / 0 but for reinmax, and then unused
  for_each([&](int64_t c, int h, int64_t i) {
    const Vec p = load(tile.w, i) / sums.sum[h], dy = load(tile.dy, i);
    Vec dx;
    if (reinmax) {
      // 2 J((D + q) / 2) dy = (D + q) * (dy - (dy_k + <dy, q>) / 2), minus J(pi) dy / 2.
      const Vec d = Vec::blendv(zero, one, is_sampled(c, h));
      const Vec pi = load(tile.dx, i) / pi_sums.sum[h];
      dx = (d + p) * (dy - half * (dy_k[h] + sums.dot[h])) - half * pi * (dy - pi_sums.dot[h]);
    } else {
      dx = divide(p * (dy - sums.dot[h]));
    }
    Vec::blendv(dx, nan, invalid[h]).store(tile.dx + i);
  });
}

}  // namespace gumbel_fused
