// The RNG contract of docs/DESIGN.md section 3, once in C++: Philox4x32-10 words and Triton's
// word -> uniform map. Header-only and free of torch, so every kernel variant (DEFAULT, AVX2,
// AVX512) compiles the same source with its own instruction set.
//
// Philox4x32-10: Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11),
// https://www.thesalmons.org/john/random123/ (Random123). The round below is the one in Triton's
// `tl.randint4x`, which the golden words in tests/data/rng_golden.json were produced with.
#pragma once

#include <cstdint>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace gumbel_fused {

constexpr uint32_t kPhiloxRoundA = 0xD2511F53u;  // multiplies counter word 0
constexpr uint32_t kPhiloxRoundB = 0xCD9E8D57u;  // multiplies counter word 2
constexpr uint32_t kPhiloxKeyA = 0x9E3779B9u;    // Weyl increment of key word 0 (golden ratio)
constexpr uint32_t kPhiloxKeyB = 0xBB67AE85u;    // Weyl increment of key word 1 (sqrt(3) - 1)
constexpr int kPhiloxRounds = 10;

// Triton's `uint_to_uniform_float` scale: the largest fp32 s with (2^31 - 1) * s < 1 after rounding,
// so u never reaches 1. It is also the smallest positive uniform, which replaces u = 0.
constexpr float kUniformScale = 4.6566127342e-10f;

namespace detail {

// SIMD primitives for the instruction set this translation unit is built for (CPU_CAPABILITY_* is set
// by the build, as for ATen's own per-ISA kernels). A register is viewed as 64-bit lanes whose low
// 32 bits carry one Philox lane: mul_epu32 multiplies exactly those into full 64-bit products, so
// hi = product >> 32 and lo = product (its high half is ignored by everything downstream) cost one
// shift per multiply, with no shuffles inside the rounds. Without SIMD (DEFAULT), the scalar loop runs.
#if defined(CPU_CAPABILITY_AVX512) && defined(__AVX512F__)
#define GUMBEL_FUSED_PHILOX_SIMD 1
using WordVec = __m512i;
constexpr int kWordLanes = 16;  // 32-bit lanes a register
inline WordVec load_words(const uint32_t* p) { return _mm512_loadu_si512(p); }
inline void store_words(uint32_t* p, WordVec v) { _mm512_storeu_si512(p, v); }
inline WordVec broadcast_word(uint32_t x) { return _mm512_set1_epi32(static_cast<int>(x)); }
inline WordVec mul_wide(WordVec a, WordVec b) { return _mm512_mul_epu32(a, b); }
inline WordVec high_to_low(WordVec a) { return _mm512_srli_epi64(a, 32); }
inline WordVec xor3(WordVec a, WordVec b, WordVec c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
// 32-bit lanes 2i <- low half of lane i of `even`, 2i + 1 <- low half of lane i of `odd`.
inline WordVec interleave_low(WordVec even, WordVec odd) {
  return _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}
#elif defined(CPU_CAPABILITY_AVX2) && defined(__AVX2__)
#define GUMBEL_FUSED_PHILOX_SIMD 1
using WordVec = __m256i;
constexpr int kWordLanes = 8;
inline WordVec load_words(const uint32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline void store_words(uint32_t* p, WordVec v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
inline WordVec broadcast_word(uint32_t x) { return _mm256_set1_epi32(static_cast<int>(x)); }
inline WordVec mul_wide(WordVec a, WordVec b) { return _mm256_mul_epu32(a, b); }
inline WordVec high_to_low(WordVec a) { return _mm256_srli_epi64(a, 32); }
inline WordVec xor3(WordVec a, WordVec b, WordVec c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
inline WordVec interleave_low(WordVec even, WordVec odd) {
  return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}
#else
constexpr int kWordLanes = 1;  // DEFAULT build: the scalar loop
#endif

}  // namespace detail

// Philox4x32-10 on N independent lanes that share the key: lane j has counter
// (n_lo[j], n_hi[j], stream, 0) and gets the four words out[k * out_stride + j], k = 0..3. Stream 0 is the
// sample's noise; Gumbel-Rao's repeat r draws from stream 1 + r (docs/DESIGN.md section 3).
//
// Why lanes: the kernels draw one counter per row of a 16-row tile (and several column groups at
// once), so a lane is a row and the four words are four consecutive columns. A round is a ~10-cycle
// dependency chain, so several registers go through the rounds together for the out-of-order core to
// overlap. The scalar loop is the DEFAULT build's path, and the plain statement of the algorithm.
template <int N>
inline void philox4x32_10(uint32_t key_lo, uint32_t key_hi, const uint32_t* __restrict n_lo,
                          const uint32_t* __restrict n_hi, uint32_t* __restrict out, int out_stride,
                          uint32_t stream = 0) {
#if defined(GUMBEL_FUSED_PHILOX_SIMD)
  if constexpr (N % detail::kWordLanes == 0) {
    using detail::WordVec;
    constexpr int kHalves = 2 * N / detail::kWordLanes;  // registers of 64-bit lanes: even, odd, even, ...
    // Registers in flight: 4 x 4 state registers and the constants fit in AVX512's 32; AVX2 has 16, and at 4 the
    // state spilled to the stack in every round (measured: 2.77 ns a word at 4, 2.02 at 2, on this AVX2 VM).
    constexpr int kBlock = detail::kWordLanes == 16 && kHalves % 4 == 0 ? 4 : 2;
    static_assert(kHalves % kBlock == 0, "whole blocks of half-registers");
    const WordVec mul_a = detail::broadcast_word(kPhiloxRoundA);
    const WordVec mul_b = detail::broadcast_word(kPhiloxRoundB);
    const WordVec zero = detail::broadcast_word(0), stream_word = detail::broadcast_word(stream);
    for (int b = 0; b < kHalves; b += kBlock) {
      WordVec c0[kBlock], c1[kBlock], c2[kBlock], c3[kBlock];
      for (int s = 0; s < kBlock; s += 2) {
        const int lane0 = (b + s) / 2 * detail::kWordLanes;
        const WordVec lo = detail::load_words(n_lo + lane0), hi = detail::load_words(n_hi + lane0);
        c0[s] = lo;  // even lanes already sit in the low halves; odd ones are shifted down
        c0[s + 1] = detail::high_to_low(lo);
        c1[s] = hi;
        c1[s + 1] = detail::high_to_low(hi);
        c2[s] = c2[s + 1] = stream_word;
        c3[s] = c3[s + 1] = zero;
      }
      uint32_t k0 = key_lo, k1 = key_hi;
      for (int round = 0; round < kPhiloxRounds; ++round) {
        const WordVec key0 = detail::broadcast_word(k0), key1 = detail::broadcast_word(k1);
        for (int s = 0; s < kBlock; ++s) {
          const WordVec prod_b = detail::mul_wide(c2[s], mul_b);
          const WordVec prod_a = detail::mul_wide(c0[s], mul_a);
          c0[s] = detail::xor3(detail::high_to_low(prod_b), c1[s], key0);
          c2[s] = detail::xor3(detail::high_to_low(prod_a), c3[s], key1);
          c1[s] = prod_b;
          c3[s] = prod_a;
        }
        k0 += kPhiloxKeyA;
        k1 += kPhiloxKeyB;
      }
      for (int s = 0; s < kBlock; s += 2) {
        uint32_t* o = out + (b + s) / 2 * detail::kWordLanes;
        detail::store_words(o, detail::interleave_low(c0[s], c0[s + 1]));
        detail::store_words(o + out_stride, detail::interleave_low(c1[s], c1[s + 1]));
        detail::store_words(o + 2 * out_stride, detail::interleave_low(c2[s], c2[s + 1]));
        detail::store_words(o + 3 * out_stride, detail::interleave_low(c3[s], c3[s + 1]));
      }
    }
    return;
  }
#endif
  for (int j = 0; j < N; ++j) {
    uint32_t c0 = n_lo[j], c1 = n_hi[j], c2 = stream, c3 = 0;
    uint32_t k0 = key_lo, k1 = key_hi;
    for (int round = 0; round < kPhiloxRounds; ++round) {
      const uint64_t prod_b = static_cast<uint64_t>(c2) * kPhiloxRoundB;
      const uint64_t prod_a = static_cast<uint64_t>(c0) * kPhiloxRoundA;
      const uint32_t next0 = static_cast<uint32_t>(prod_b >> 32) ^ c1 ^ k0;
      const uint32_t next2 = static_cast<uint32_t>(prod_a >> 32) ^ c3 ^ k1;
      c1 = static_cast<uint32_t>(prod_b);
      c3 = static_cast<uint32_t>(prod_a);
      c0 = next0;
      c2 = next2;
      k0 += kPhiloxKeyA;  // uint32 arithmetic wraps, as the contract's key schedule does
      k1 += kPhiloxKeyB;
    }
    out[0 * out_stride + j] = c0;
    out[1 * out_stride + j] = c1;
    out[2 * out_stride + j] = c2;
    out[3 * out_stride + j] = c3;
  }
}

// Triton's `uint_to_uniform_float`: read the word as int32 x, map x < 0 to -x - 1, scale to [0, 1).
// For x < 0, -x - 1 == ~x == x ^ (x >> 31) (arithmetic shift): a branch-free form that vectorizes.
// Exact: x <= 2^31 - 1 converts to fp32 with one rounding, as in Triton, then one fp32 multiply.
inline float uniform_from_word(uint32_t word) {
  const int32_t x = static_cast<int32_t>(word);
  const int32_t folded = x ^ (x >> 31);
  return static_cast<float>(folded) * kUniformScale;
}

// The contract's uniform with u = 0 replaced by the smallest positive uniform, so that the Gumbel noise
// -log(-log1p(-u)) is finite for every word (u = 0 gives +inf otherwise).
inline float clamped_uniform_from_word(uint32_t word) {
  const float u = uniform_from_word(word);
  return u < kUniformScale ? kUniformScale : u;
}

}  // namespace gumbel_fused
