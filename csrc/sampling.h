// Shared by the sampling ops (gumbel_max.cpp, gumbel_topk.cpp): the scores z = x / T + g of the rows, visited a
// vector of lanes at a time in one of two layouts, and the split of the work into tasks.
//
// Row tiles: lanes are 16 rows, visited in chunks of 16 columns: the tiles of the gumbel_softmax kernels, for any
// strides and short rows. Column tiles: lanes are 16 runs of 16 consecutive columns of one row, so one row fills
// every lane. A block of 256 columns is one 16x16 transposed load, and its Philox counters are drawn in lane
// order: column b0 + 16 j + a is word a % 4 of counter r * groups + b0 / 4 + 4 j + a / 4, which is where
// draw_chunk_words puts column_words(words, a)[j] for row_base[j] = r * groups + b0 / 4 + 4 j. Long rows are
// also cut into segments of whole blocks, so that a few rows (B = 1 decoding) still keep every thread busy.
//
// The ops' results are exact functions of the scores (a max, or the first k in draw order, with ties to the
// lower column), so how the rows are split into tasks, and so the thread count, cannot change them. The split
// depends only on the problem's shape anyway.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernel_common.h"

namespace gumbel_fused {

constexpr int64_t kBlockColumns = kLanes * kChunk;  // 256: a column tile
// Rows this long and contiguous use column tiles: their padded last block wastes at most a fifth of a row.
constexpr int64_t kColumnTileMinK = 1024;
// Long rows are cut into segments of at least this many columns (~15 us of work, well above a task's few us)
// until there are kMinTasks tasks, or one row a task when rows are that many: a fixed rule of the shape. A
// 128256-long row makes 15 segments, which 2 threads share 8 / 7 (at 2^14 columns: 7 segments, 4 / 3).
constexpr int64_t kMinSegmentColumns = 1 << 13;
constexpr int64_t kMinTasks = 64;

// Draw order: a larger score first, and on a tie the lower column (as torch.argmax and a stable sort).
template <typename acc_t>
struct Draw {
  acc_t z;
  int64_t col;  // -1: no draw (the placeholder that fills a row's top-k buffer before any entrant)
};

template <typename acc_t>
bool drawn_before(const Draw<acc_t>& a, const Draw<acc_t>& b) {
  return a.z > b.z || (a.z == b.z && a.col < b.col);
}

// Whether a row's draws are undefined (returned as -1): a NaN among its scores, or no finite best score (all
// -inf, or a +inf): where softmax(z) is NaN, as gumbel_softmax's output.
template <typename acc_t>
bool undefined_row(acc_t best, bool nan) {
  return nan || !std::isfinite(best);
}

inline bool use_column_tiles(int64_t n_cols, int64_t col_stride) {
  return col_stride == 1 && n_cols >= kColumnTileMinK;
}

// How the column-tile path cuts rows: segments a row, each of `columns` (a multiple of kBlockColumns).
struct Segments {
  int64_t per_row, columns;
};

inline Segments row_segments(int64_t rows, int64_t n_cols) {
  const int64_t blocks = (n_cols + kBlockColumns - 1) / kBlockColumns;
  const int64_t most = std::max<int64_t>(1, n_cols / kMinSegmentColumns);
  const int64_t per_row = std::clamp<int64_t>((kMinTasks + rows - 1) / rows, 1, most);
  const int64_t blocks_each = (blocks + per_row - 1) / per_row;
  return {(blocks + blocks_each - 1) / blocks_each, blocks_each * kBlockColumns};
}

// x_chunk[a][j] = row[b0 + 16 j + a] in the math dtype for a column tile; -inf at and past `end`, the row's length.
template <typename scalar_t, typename acc_t>
C10_ALWAYS_INLINE void load_column_block(const scalar_t* row, int64_t b0, int64_t end, acc_t (*x_chunk)[kLanes]) {
  if constexpr (std::is_same_v<acc_t, float>) {
    if (b0 + kBlockColumns <= end) {
      if constexpr (std::is_same_v<scalar_t, float>) {
        transpose_16x16(row + b0, kChunk, &x_chunk[0][0], kLanes);
      } else {  // fp16/bf16: widen with at::vec first, then the same transpose
        float widened[kBlockColumns];
        at::vec::convert(row + b0, widened, kBlockColumns);
        transpose_16x16(widened, kChunk, &x_chunk[0][0], kLanes);
      }
      return;
    }
  }
  for (int j = 0; j < kLanes; ++j) {
    for (int a = 0; a < kChunk; ++a) {
      const int64_t c = b0 + j * kChunk + a;
      x_chunk[a][j] = c < end ? static_cast<acc_t>(row[c]) : -std::numeric_limits<acc_t>::infinity();
    }
  }
}

// Visits the scores of columns [begin, end) of row `r` (begin a multiple of kBlockColumns, the row contiguous)
// as column tiles: visit(h, x / T, words, col) for each vector, whose lane j holds column col + kChunk * j.
template <typename scalar_t, typename acc_t, typename Visit>
void visit_column_tiles(const Problem<acc_t>& problem, const scalar_t* row, int64_t r, int64_t begin, int64_t end,
                        const Visit& visit) {
  using Vec = Vectorized<acc_t>;
  const DivideByTau<acc_t> scale(problem.tau);
  uint32_t words[4 * kWordStride];
  acc_t x_chunk[kChunk][kLanes];
  uint64_t row_base[kLanes];
  for (int64_t b0 = begin; b0 < end; b0 += kBlockColumns) {
    load_column_block(row, b0, end, x_chunk);
    for (int j = 0; j < kLanes; ++j) {
      row_base[j] = static_cast<uint64_t>(r) * problem.key.groups + static_cast<uint64_t>((b0 + j * kChunk) / 4);
    }
    draw_chunk_words(problem.key, row_base, 0, kChunk, words);
    for (int a = 0; a < kChunk; ++a) {
      for (int h = 0; h < kLanes / Vec::size(); ++h) {
        const int lane = h * Vec::size();
        visit(h, scale(Vec::loadu(x_chunk[a] + lane)), column_words(words, a) + lane, b0 + a);
      }
    }
  }
}

// Visits the scores of the rows of a row tile: visit(h, x / T, words, col) for each vector, every lane at `col`.
template <typename scalar_t, typename acc_t, typename Visit>
void visit_row_tile(const Problem<acc_t>& problem, const Operand<const scalar_t>& x, const TileRows& rows,
                    const uint64_t* row_base, const Visit& visit) {
  using Vec = Vectorized<acc_t>;
  const DivideByTau<acc_t> scale(problem.tau);
  uint32_t words[4 * kWordStride];
  acc_t x_chunk[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
    load_chunk(x.data, rows, x.s1, c0, nc, x_chunk);
    draw_chunk_words(problem.key, row_base, c0, nc, words);
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < kLanes / Vec::size(); ++h) {
        const int lane = h * Vec::size();
        visit(h, scale(Vec::loadu(x_chunk[c] + lane)), column_words(words, c) + lane, c0 + c);
      }
    }
  }
}

// z = x / T + g of one vector (x already divided): the contract's g from the words w, in the math dtype.
template <typename acc_t>
C10_ALWAYS_INLINE Vectorized<acc_t> scores(const Vectorized<acc_t>& x, const uint32_t* w) {
  return x + gumbel_from_exponential(exponential_from_words<acc_t>(w));
}

// Runs column_fn(task, r, begin, end) on every (row, segment) of the column-tile path, `task` = r * segments a
// row + segment, or tile_fn(r0, count, row_base) on every row tile of the row-tile path; in parallel.
template <typename acc_t, typename ColumnFn, typename TileFn>
void parallel_rows(const Problem<acc_t>& problem, int64_t col_stride, const ColumnFn& column_fn, const TileFn& tile_fn) {
  if (use_column_tiles(problem.n_cols, col_stride)) {
    const Segments segments = row_segments(problem.rows, problem.n_cols);
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::min(segments.columns, problem.n_cols));
    at::parallel_for(0, problem.rows * segments.per_row, grain, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t r = task / segments.per_row, first = task % segments.per_row * segments.columns;
        column_fn(task, r, first, std::min(problem.n_cols, first + segments.columns));
      }
    });
    return;
  }
  const int64_t tiles = (problem.rows + kLanes - 1) / kLanes;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / (kLanes * problem.n_cols));
  at::parallel_for(0, tiles, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r0 = t * kLanes;
      const int count = static_cast<int>(std::min<int64_t>(kLanes, problem.rows - r0));
      uint64_t row_base[kLanes];  // counter of (row, column 0): n = r * ceil(K / 4)
      for (int j = 0; j < kLanes; ++j) row_base[j] = static_cast<uint64_t>(r0 + j) * problem.key.groups;
      tile_fn(r0, count, row_base);
    }
  });
}

}  // namespace gumbel_fused
