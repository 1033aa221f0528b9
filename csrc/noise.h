// Gumbel noise for a chunk of a tile: Philox words (philox.h) -> contract uniforms -> g = -log(-log1p(-u))
// (contract v2, DESIGN.md section 3), vectorized with at::vec. The kernels and the tests' probe extension
// (tests/cpu_probe/rng_probe.cpp) both go through these functions, so the tests check the kernels' own noise.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <type_traits>

#include "philox.h"
#include "tile.h"

namespace gumbel_fused {

// The per-call constants of the contract (docs/DESIGN.md section 3).
struct NoiseKey {
  uint32_t key_lo, key_hi;  // seed & 0xFFFFFFFF, seed >> 32
  int64_t groups;           // ceil(K / 4): counters per row
};

inline NoiseKey noise_key(int64_t seed, int64_t n_cols) {
  const auto s = static_cast<uint64_t>(seed);
  return {static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32), (n_cols + 3) / 4};
}

// Words of the columns c0 .. c0 + 4 * G - 1 (c0 % 4 == 0) for the lanes whose rows start their
// counters at row_base[j] = r_j * groups: column c0 + c of lane j lands in
// words[(c % 4) * kWordStride + (c / 4) * kLanes + j], word c % 4 of counter row_base[j] + c0 / 4 + c / 4 of
// `stream` (0: the sample's noise).
constexpr int kWordStride = kChunk * kLanes / 4;

template <int G>
inline void draw_groups(const NoiseKey& key, const uint64_t* row_base, int64_t q0, uint32_t* words, uint32_t stream) {
  uint32_t n_lo[G * kLanes], n_hi[G * kLanes];
  for (int g = 0; g < G; ++g) {
    for (int j = 0; j < kLanes; ++j) {
      const uint64_t n = row_base[j] + static_cast<uint64_t>(q0 + g);  // n = r * ceil(K/4) + c/4 < 2^64
      n_lo[g * kLanes + j] = static_cast<uint32_t>(n);
      n_hi[g * kLanes + j] = static_cast<uint32_t>(n >> 32);
    }
  }
  philox4x32_10<G * kLanes>(key.key_lo, key.key_hi, n_lo, n_hi, words, kWordStride, stream);
}

// The words of the nc <= kChunk columns starting at c0: only the groups that hold a valid column are
// drawn, which matters for small K (K = 10 needs 3 groups a row, not 4).
inline void draw_chunk_words(const NoiseKey& key, const uint64_t* row_base, int64_t c0, int nc, uint32_t* words,
                             uint32_t stream = 0) {
  const int64_t q0 = c0 / 4;
  switch ((nc + 3) / 4) {
    case 1: draw_groups<1>(key, row_base, q0, words, stream); break;
    case 2: draw_groups<2>(key, row_base, q0, words, stream); break;
    case 3: draw_groups<3>(key, row_base, q0, words, stream); break;
    default: draw_groups<4>(key, row_base, q0, words, stream); break;
  }
}

C10_ALWAYS_INLINE const uint32_t* column_words(const uint32_t* words, int c) {
  return words + (c % 4) * kWordStride + (c / 4) * kLanes;
}

// Natural log of positive normal fp32 lanes in ~20 vector ops with no division: Cephes' logf
// (S. Moshier, http://www.netlib.org/cephes/, peak relative error 7.6e-8, about 1 ulp).
// Why not Vectorized<float>::log() (Sleef_logf*_u10): measured 0.75 ns an element here, which made two
// logs 80% of the forward's time; this is ~4x faster. The contract fixes the words and u, not the last
// bit of g (docs/DESIGN.md section 3), and the tests bound g against the fp64 log.
//
// v = 2^k * m with m in [sqrt(1/2), sqrt(2)), by integer arithmetic on the bits (as musl's logf):
// offsetting the bits by those of sqrt(1/2) makes the exponent field round at sqrt(2) instead of 2.
C10_ALWAYS_INLINE at::vec::Vectorized<float> log_positive(const at::vec::Vectorized<float>& v) {
  using Vf = at::vec::Vectorized<float>;
  using Vi = at::vec::Vectorized<int32_t>;
  constexpr int32_t kSqrtHalfBits = 0x3f3504f3;  // bits of sqrt(1/2)
  const Vi ix = at::vec::cast<int32_t>(v) - Vi(kSqrtHalfBits);
  const Vf k = at::vec::convert_to_fp_of_same_size<float>(ix >> Vi(23));          // exponent
  const Vf m = at::vec::cast<float>((ix & Vi(0x007fffff)) + Vi(kSqrtHalfBits));  // mantissa
  const Vf f = m - Vf(1.0f);  // exact (Sterbenz), in [-0.293, 0.415)
  const Vf f2 = f * f;
  // log(1 + f) = f - f^2 / 2 + f^3 P(f), P of degree 8 (Cephes logf coefficients, Horner).
  Vf p(7.0376836292e-2f);
  p = at::vec::fmadd(p, f, Vf(-1.1514610310e-1f));
  p = at::vec::fmadd(p, f, Vf(1.1676998740e-1f));
  p = at::vec::fmadd(p, f, Vf(-1.2420140846e-1f));
  p = at::vec::fmadd(p, f, Vf(1.4249322787e-1f));
  p = at::vec::fmadd(p, f, Vf(-1.6668057665e-1f));
  p = at::vec::fmadd(p, f, Vf(2.0000714765e-1f));
  p = at::vec::fmadd(p, f, Vf(-2.4999993993e-1f));
  p = at::vec::fmadd(p, f, Vf(3.3333331174e-1f));
  // k * ln2 in two parts (0.693359375 has few bits, so k * it is exact) keeps the sum accurate.
  Vf y = at::vec::fmadd(p * f, f2, k * Vf(-2.12194440e-4f));
  y = at::vec::fmadd(f2, Vf(-0.5f), y);
  return at::vec::fmadd(k, Vf(0.693359375f), f + y);
}

C10_ALWAYS_INLINE at::vec::Vectorized<double> log_positive(const at::vec::Vectorized<double>& v) {
  return v.log();  // fp64 math keeps Sleef's log: fp64 inputs are not the speed target
}

// The contract's clamped uniforms of Vec::size() words, in fp32: clamped_uniform_from_word in vector form
// (the compiler leaves that scalar loop scalar). u = 0 becomes the smallest uniform.
C10_ALWAYS_INLINE at::vec::Vectorized<float> uniform_from_words(const uint32_t* w) {
  using Vf = at::vec::Vectorized<float>;
  using Vi = at::vec::Vectorized<int32_t>;
  const Vf scale(kUniformScale);
  const Vi x = Vi::loadu(w);
  return at::vec::maximum(at::vec::convert_to_fp_of_same_size<float>(x ^ (x >> Vi(31))) * scale, scale);
}

// E = -log1p(-u): an Exp(1) sample in [4.66e-10, 16.64] (u in [2^-31, 1 - 2^-24]), so both logs see positive
// normal arguments and g = -log(E) lies in [-2.82, 21.49]: finite for every word, 0 and 0xFFFFFFFF too. E is
// small where u is small, where the uniforms are finest, which is what gives g its upper tail (v1's -log(u)
// stopped at g = 16.64). log1p from log in three additions: with w = 1 - u rounded, its rounding error
// c = (w - 1) + u is exact (Sterbenz, twice), and log(1 - u) = log(w - c) = log(w) - c / w + O(c^2); taking c
// for c / w errs by c u / (1 - u) <= 2^-24 E for u <= 1/2, and c = 0 above. log_positive is accurate
// relative to its result near 1 (f = w - 1 is exact there), so E keeps ~2 ulp where it is tiny.
template <typename acc_t>
C10_ALWAYS_INLINE at::vec::Vectorized<acc_t> exponential_from_uniform(const at::vec::Vectorized<acc_t>& u) {
  using Vec = at::vec::Vectorized<acc_t>;
  const Vec one(acc_t(1));
  const Vec w = one - u;
  return ((w - one) + u) - log_positive(w);
}

// E for the Vec::size() words w, in the math dtype (fp64: from the same fp32 uniform, widened exactly).
template <typename acc_t>
C10_ALWAYS_INLINE at::vec::Vectorized<acc_t> exponential_from_words(const uint32_t* w) {
  using Vec = at::vec::Vectorized<acc_t>;
  if constexpr (std::is_same_v<acc_t, float>) {
    return exponential_from_uniform(uniform_from_words(w));
  } else {
    acc_t u[Vec::size()];
    for (int j = 0; j < Vec::size(); ++j) u[j] = static_cast<acc_t>(clamped_uniform_from_word(w[j]));
    return exponential_from_uniform(Vec::loadu(u));
  }
}

template <typename acc_t>
C10_ALWAYS_INLINE at::vec::Vectorized<acc_t> gumbel_from_exponential(const at::vec::Vectorized<acc_t>& e) {
  return at::vec::Vectorized<acc_t>(acc_t(0)) - log_positive(e);
}

// The bound behind the pruning of the argmax and top-k kernels (kernel_common.h argmax_step, gumbel_topk.cpp): an
// upper bound on g from the word alone, in seven vector ops and no log, tight where g is large (where an element
// can win) and loose where it is small (where it cannot anyway). The tests check it against the computed g for
// every word with u < 1/8 and a sample of the rest.
//
// E = -log1p(-u) >= u, so g = -log(E) <= -log(u), with u = x s, x = fold(word) and s = kUniformScale =
// 2^-31 (1 - 2^-24): -log(u) = ln2 (-log2(s) - log2(x)). For x = 2^k m, m in [1, 2): log2(m) >= m - 1 (log2 is
// concave and equal to m - 1 at both ends), so log2(x) >= k + m - 1 = bits(float(x)) / 2^23 - 127, the float's
// bits read as an integer, at most 0.086 below log2(x). Hence g <= ln2 (158 - bits(float(x)) / 2^23) + margin.
// kMargin covers -log2(s) - 31 = 8.6e-8, the rounding of the bits and of the constants to fp32 (~1e-5), and
// the error of the computed E and g (a few 1e-7). x = 0 counts as 1, as the contract clamps u = 0 to s. Slack
// above g: log(E / u) = u / 2 + O(u^2), plus at most 0.06 from the bits.
C10_ALWAYS_INLINE at::vec::Vectorized<float> gumbel_upper_bound(const uint32_t* w) {
  using Vf = at::vec::Vectorized<float>;
  using Vi = at::vec::Vectorized<int32_t>;
  constexpr float kLn2 = 0.693147180559945f, kMargin = 1e-4f;
  const Vi x = Vi::loadu(w);
  const Vf folded = at::vec::maximum(at::vec::convert_to_fp_of_same_size<float>(x ^ (x >> Vi(31))), Vf(1.0f));
  const Vf bits = at::vec::convert_to_fp_of_same_size<float>(at::vec::cast<int32_t>(folded));
  return at::vec::fmadd(bits, Vf(-kLn2 / 8388608.0f), Vf(158.0f * kLn2 + kMargin));
}

// g[j] = -log(-log1p(-u_j)) in the math dtype for the kLanes words w[j].
template <typename acc_t>
inline void gumbel_from_words(const uint32_t* w, acc_t* g) {
  using Vec = at::vec::Vectorized<acc_t>;
  static_assert(kLanes % Vec::size() == 0, "a tile column must be whole vectors");
  for (int h = 0; h < kLanes; h += Vec::size()) {
    gumbel_from_exponential(exponential_from_words<acc_t>(w + h)).store(g + h);
  }
}

}  // namespace gumbel_fused
