// Tiles of 16 logical rows: where their elements live, and moving column chunks of them between a
// strided tensor and a small column-major buffer in the math dtype.
//
// Why tiles of rows, and column-major buffers: the kernels draw one Philox counter per row (a SIMD
// lane) and get four consecutive columns per call, so the natural register holds one column of 16
// rows. For the dVAE layout (B, K, H*W) with the softmax over K, the 16 rows of a tile are 16
// consecutive spatial positions, contiguous in memory: a column is one plain vector load, and no
// transpose copy of the tensor is ever made. For row-major logits (softmax over the last dim), a
// 16x16 block is transposed in registers instead. Anything else (tiles that wrap around an `outer`
// boundary, exotic strides) goes through a scalar gather: correct for every stride, just slower.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace gumbel_fused {

constexpr int kLanes = 16;  // rows per tile: one counter per row, 16 = one AVX512 fp32 register
constexpr int kChunk = 16;  // columns per chunk: four Philox groups of four words
static_assert(kLanes == 16 && kChunk == 16, "the row-major path transposes 16x16 blocks");
// How far ahead, in chunks, the row-major path asks for its 16 rows' next lines. A tile reads 16 rows (and the
// backward three tensors) a line at a time: 16 to 48 concurrent streams, more than the hardware prefetchers
// follow. Measured on the 2-core Zen 4 VM, 2 threads, same bits: the backward from y -20 to -32%, ReinMax's
// backward -15 to -22% at (64, 32, 512), (4096, 1024) and (256, 32000); 2 chunks (128 bytes) beat 1, 4 and 8.
constexpr int kPrefetchChunks = 2;

// The rows r0 .. r0 + count - 1 of a (outer, K, inner) tensor with element strides (s0, s1, s2);
// logical row r = o * inner + i owns the elements (o, :, i).
struct TileRows {
  int64_t offset[kLanes];  // element offset of (row r0 + j, column 0); lanes >= count repeat the last row
  int64_t lane_stride;     // offset[j] == offset[0] + j * lane_stride, valid when `regular`
  bool regular;            // the `count` rows are equally spaced
  int count;               // valid lanes, 1 .. kLanes
};

inline TileRows tile_rows(int64_t r0, int count, int64_t inner, int64_t s0, int64_t s2) {
  TileRows t;
  t.count = count;
  if (inner == 1) {  // rows are the outer index: equally spaced, and no division (small K pays for it)
    for (int j = 0; j < kLanes; ++j) t.offset[j] = (r0 + std::min(j, count - 1)) * s0;
    t.lane_stride = s0;
    t.regular = true;
    return t;
  }
  int64_t o = r0 / inner, i = r0 % inner;
  for (int j = 0; j < kLanes; ++j) {
    t.offset[j] = o * s0 + i * s2;
    if (j + 1 < count && ++i == inner) {
      i = 0;
      ++o;
    }
  }
  t.lane_stride = count > 1 ? t.offset[1] - t.offset[0] : 0;
  t.regular = true;
  for (int j = 2; j < count; ++j) {
    t.regular = t.regular && t.offset[j] - t.offset[0] == j * t.lane_stride;
  }
  return t;
}

// Asks for the cache line `elements` past p (for writing when kWrite). The address is computed as an integer: the
// line may lie past the tensor's end, where a prefetch is harmless but forming the pointer is not allowed.
template <int kWrite = 0, typename T>
C10_ALWAYS_INLINE void prefetch_ahead(const T* p, int64_t elements) {
#if defined(__GNUC__)
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + elements * sizeof(T)), kWrite);
#endif
}

// A 16x16 fp32 transpose, dst[j * ld_dst + i] = src[i * ld_src + j], with at::vec's in-register kernel.
// `flatten` inlines that kernel here, where its sizes are constants: called out of line, its loops over
// runtime sizes kept the 16 registers in memory, and the transposes took a fifth of the backward.
#if defined(__GNUC__)
__attribute__((flatten))
#endif
inline void transpose_16x16(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  at::vec::transpose_mxn<float, 16, 16>(src, ld_src, dst, ld_dst);
}

// buf[c][j] = element (row j, column c0 + c) for c < nc, converted to the math dtype acc_t.
// Lanes >= rows.count are loaded from the last valid row, so they hold finite data when it does.
template <typename scalar_t, typename acc_t>
C10_ALWAYS_INLINE void load_chunk(const scalar_t* data, const TileRows& rows, int64_t col_stride, int64_t c0, int nc,
                       acc_t (*buf)[kLanes]) {
  const bool full = rows.count == kLanes && rows.regular;
  if (full && rows.lane_stride == 1) {  // dVAE layout: a column of the tile is contiguous
    for (int c = 0; c < nc; ++c) {
      const scalar_t* p = data + rows.offset[0] + (c0 + c) * col_stride;
      // Columns are col_stride apart (4 KiB for H*W = 1024): each is a new page, which the hardware
      // prefetchers do not cross, so ask for the next chunk's column now.
      prefetch_ahead(p, kChunk * col_stride);
      for (int j = 0; j < kLanes; ++j) buf[c][j] = static_cast<acc_t>(p[j]);
    }
    return;
  }
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    if (full && col_stride == 1) {  // row-major: rows contiguous, transpose a block
      if (nc == kChunk) {
        for (int j = 0; j < kLanes; ++j) prefetch_ahead(data + rows.offset[j] + c0, kPrefetchChunks * kChunk);
        transpose_16x16(data + rows.offset[0] + c0, rows.lane_stride, &buf[0][0], kLanes);
      } else {  // a row's last columns (all of them for K < 16): partial loads, then the same transpose
        using Vf = at::vec::Vectorized<float>;
        float block[kLanes][kChunk], cols[kChunk][kLanes];
        for (int j = 0; j < kLanes; ++j) {
          for (int h = 0; h < kChunk; h += Vf::size()) {  // zero-filled past nc
            Vf::loadu(data + rows.offset[j] + c0 + h, std::clamp(nc - h, 0, Vf::size())).store(block[j] + h);
          }
        }
        transpose_16x16(&block[0][0], kChunk, &cols[0][0], kLanes);
        for (int c = 0; c < nc; ++c) {  // buf may hold just nc columns; vector moves, as in store_chunk
          for (int h = 0; h < kLanes; h += Vf::size()) Vf::loadu(cols[c] + h).store(buf[c] + h);
        }
      }
      return;
    }
  }
  for (int c = 0; c < nc; ++c) {
    for (int j = 0; j < kLanes; ++j) buf[c][j] = static_cast<acc_t>(data[rows.offset[j] + (c0 + c) * col_stride]);
  }
}

// The inverse of load_chunk: element (row j, column c0 + c) = buf[c][j], for the valid rows only.
template <typename scalar_t, typename acc_t>
C10_ALWAYS_INLINE void store_chunk(scalar_t* data, const TileRows& rows, int64_t col_stride, int64_t c0, int nc,
                        const acc_t (*buf)[kLanes]) {
  const bool full = rows.count == kLanes && rows.regular;
  if (full && rows.lane_stride == 1) {
    for (int c = 0; c < nc; ++c) {
      scalar_t* p = data + rows.offset[0] + (c0 + c) * col_stride;
      prefetch_ahead<1>(p, kChunk * col_stride);  // as in load_chunk, for writing
      for (int j = 0; j < kLanes; ++j) p[j] = static_cast<scalar_t>(buf[c][j]);
    }
    return;
  }
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    if (full && col_stride == 1) {  // row-major: transpose a block
      if (nc == kChunk) {
        for (int j = 0; j < kLanes; ++j) prefetch_ahead<1>(data + rows.offset[j] + c0, kPrefetchChunks * kChunk);
        transpose_16x16(&buf[0][0], kLanes, data + rows.offset[0] + c0, rows.lane_stride);
      } else {  // a row's last columns (all of them for K < 16): the transpose, then partial stores
        // The loop below would do, and GCC vectorizes it into scatters, microcoded on AMD: at K = 10 they took
        // two thirds of the backward tile's own time (perf, Zen 4).
        using Vf = at::vec::Vectorized<float>;
        float cols[kChunk][kLanes], block[kLanes][kChunk];
        for (int c = 0; c < kChunk; ++c) {  // vector moves: as std::copy_n and a zero-fill, rep movs/stos cost more
          for (int h = 0; h < kLanes; h += Vf::size()) (c < nc ? Vf::loadu(buf[c] + h) : Vf(0.0f)).store(cols[c] + h);
        }
        transpose_16x16(&cols[0][0], kLanes, &block[0][0], kChunk);
        for (int j = 0; j < kLanes; ++j) {
          for (int h = 0; h < nc; h += Vf::size()) {
            Vf::loadu(block[j] + h).store(data + rows.offset[j] + c0 + h, std::min(nc - h, Vf::size()));
          }
        }
      }
      return;
    }
  }
  for (int c = 0; c < nc; ++c) {
    for (int j = 0; j < rows.count; ++j) {
      data[rows.offset[j] + (c0 + c) * col_stride] = static_cast<scalar_t>(buf[c][j]);
    }
  }
}

}  // namespace gumbel_fused
