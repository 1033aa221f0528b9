// Gumbel noise for a chunk of a tile: Philox words (philox.h) -> contract uniforms -> g = -log(-log u),
// vectorized with at::vec (Sleef log on AVX2/AVX512). The kernels and the debug entry points that the
// golden tests read both go through these functions, so the tests check the kernels' own noise.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cstdint>

#include "philox.h"
#include "tile.h"

namespace gumbel_fused {

// The per-call constants of the contract (DESIGN.md section 3).
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
// words[(c % 4) * kWordStride + (c / 4) * kLanes + j], word c % 4 of counter row_base[j] + c0 / 4 + c / 4.
constexpr int kWordStride = kChunk * kLanes / 4;

template <int G>
inline void draw_groups(const NoiseKey& key, const uint64_t* row_base, int64_t q0, uint32_t* words) {
  uint32_t n_lo[G * kLanes], n_hi[G * kLanes];
  for (int g = 0; g < G; ++g) {
    for (int j = 0; j < kLanes; ++j) {
      const uint64_t n = row_base[j] + static_cast<uint64_t>(q0 + g);  // n = r * ceil(K/4) + c/4 < 2^64
      n_lo[g * kLanes + j] = static_cast<uint32_t>(n);
      n_hi[g * kLanes + j] = static_cast<uint32_t>(n >> 32);
    }
  }
  philox4x32_10<G * kLanes>(key.key_lo, key.key_hi, n_lo, n_hi, words, kWordStride);
}

// The words of the nc <= kChunk columns starting at c0: only the groups that hold a valid column are
// drawn, which matters for small K (K = 10 needs 3 groups a row, not 4).
inline void draw_chunk_words(const NoiseKey& key, const uint64_t* row_base, int64_t c0, int nc, uint32_t* words) {
  const int64_t q0 = c0 / 4;
  switch ((nc + 3) / 4) {
    case 1: draw_groups<1>(key, row_base, q0, words); break;
    case 2: draw_groups<2>(key, row_base, q0, words); break;
    case 3: draw_groups<3>(key, row_base, q0, words); break;
    default: draw_groups<4>(key, row_base, q0, words); break;
  }
}

inline const uint32_t* column_words(const uint32_t* words, int c) {
  return words + (c % 4) * kWordStride + (c / 4) * kLanes;
}

// g[j] = -log(-log(u_j)) in the math dtype for the kLanes words w[j], u clamped as the contract says.
// -log(u) lies in [6e-8, 21.5] (u in [2^-31, 1 - 2^-24]), so both logs see positive finite arguments
// and g lies in [-3.07, 16.6]: finite for every word, including 0x00000000 and 0xFFFFFFFF.
template <typename acc_t>
inline void gumbel_from_words(const uint32_t* w, acc_t* g) {
  using Vec = at::vec::Vectorized<acc_t>;
  static_assert(kLanes % Vec::size() == 0, "a tile column must be whole vectors");
  acc_t u[kLanes];
  for (int j = 0; j < kLanes; ++j) u[j] = static_cast<acc_t>(clamped_uniform_from_word(w[j]));  // fp64: exact
  for (int h = 0; h < kLanes; h += Vec::size()) {
    const Vec neg_log_u = Vec::loadu(u + h).log().neg();
    neg_log_u.log().neg().store(g + h);
  }
}

}  // namespace gumbel_fused
