// Shared by the sampling ops (gumbel_max.cpp, gumbel_topk.cpp): the scores z = (x - m) / T + g of the rows, visited
// a vector of lanes at a time in one of two layouts, and the split of the work into tasks. m is the row max of x,
// or 0 where it is not finite, as reference/gumbel_softmax.py's row_shift: unshifted, x / T + g rounds to x's
// precision, and at |x| = 1e8 fp32's spacing (8) swallows g, so tied logits would always give the first index.
// m is found by a pass over the row before any key (row_shift_of, row_tile_shifts), not by gumbel_softmax's
// running max (RunningShift): keys re-based to a grown shift round differently from keys computed with the final
// one, and the draws must be the reference's exactly, whatever the tiling.
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
#include <vector>

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

// max(a, b), NaN when either is (as at::vec::maximum): a NaN row keeps a non-finite max, so its m is 0.
template <typename acc_t>
acc_t nan_propagating_max(acc_t a, acc_t b) {
  return (a > b || std::isnan(a)) ? a : b;
}

// The max of row[begin, end) (contiguous) in the math dtype.
template <typename scalar_t, typename acc_t>
acc_t contiguous_max(const scalar_t* row, int64_t begin, int64_t end) {
  using Vec = Vectorized<acc_t>;
  constexpr int kAccumulators = 4;  // independent maxima, so the loop is not one chain of max latencies
  Vec best[kAccumulators];
  for (auto& b : best) b = Vec(-std::numeric_limits<acc_t>::infinity());
  int64_t c = begin;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    for (; c + kAccumulators * Vec::size() <= end; c += kAccumulators * Vec::size()) {
      for (int i = 0; i < kAccumulators; ++i) {
        best[i] = at::vec::maximum(best[i], Vec::loadu(row + c + i * Vec::size()));
      }
    }
  } else {  // fp16/bf16: widen a column tile's worth at a time (converting is exact, and keeps the order)
    acc_t widened[kBlockColumns];
    for (; c + kBlockColumns <= end; c += kBlockColumns) {
      at::vec::convert(row + c, widened, kBlockColumns);
      for (int v = 0; v < kBlockColumns; v += kAccumulators * Vec::size()) {
        for (int i = 0; i < kAccumulators; ++i) {
          best[i] = at::vec::maximum(best[i], Vec::loadu(widened + v + i * Vec::size()));
        }
      }
    }
  }
  acc_t lanes[kAccumulators * Vec::size()];
  for (int i = 0; i < kAccumulators; ++i) best[i].store(lanes + i * Vec::size());
  acc_t result = -std::numeric_limits<acc_t>::infinity();
  for (acc_t v : lanes) result = nan_propagating_max(result, v);
  for (; c < end; ++c) result = nan_propagating_max(result, static_cast<acc_t>(row[c]));
  return result;
}

// m for a row of max `x_max`: x_max, or 0 where it is not finite (NaN, +-inf; such rows have no draw anyway).
template <typename acc_t>
acc_t row_shift_of(acc_t x_max) {
  return std::isfinite(x_max) ? x_max : acc_t(0);
}

// m of each lane of a row tile (shifts[j] for lane j): a first pass over the tile's logits.
template <typename scalar_t, typename acc_t>
void row_tile_shifts(const Problem<acc_t>& problem, const Operand<const scalar_t>& x, const TileRows& rows,
                     acc_t* shifts) {
  using Vec = Vectorized<acc_t>;
  constexpr int H = kLanes / Vec::size();
  Vec x_max[H];
  for (auto& m : x_max) m = Vec(-std::numeric_limits<acc_t>::infinity());
  acc_t x_chunk[kChunk][kLanes];
  for (int64_t c0 = 0; c0 < problem.n_cols; c0 += kChunk) {
    const int nc = static_cast<int>(std::min<int64_t>(kChunk, problem.n_cols - c0));
    load_chunk(x.data, rows, x.s1, c0, nc, x_chunk);
    for (int c = 0; c < nc; ++c) {
      for (int h = 0; h < H; ++h) x_max[h] = at::vec::maximum(x_max[h], Vec::loadu(x_chunk[c] + h * Vec::size()));
    }
  }
  for (int h = 0; h < H; ++h) finite_or_zero(x_max[h]).store(shifts + h * Vec::size());
}

// Visits the scores of columns [begin, end) of row `r` (begin a multiple of kBlockColumns, the row contiguous)
// as column tiles: visit(h, (x - shift) / T, words, col) for each vector, whose lane j holds column
// col + kChunk * j.
template <typename scalar_t, typename acc_t, typename Visit>
void visit_column_tiles(const Problem<acc_t>& problem, const scalar_t* row, int64_t r, int64_t begin, int64_t end,
                        acc_t shift, const Visit& visit) {
  using Vec = Vectorized<acc_t>;
  const DivideByTau<acc_t> scale(problem.tau);
  const Vec m(shift);
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
        visit(h, scale(Vec::loadu(x_chunk[a] + lane) - m), column_words(words, a) + lane, b0 + a);
      }
    }
  }
}

// Visits the scores of the rows of a row tile: visit(h, (x - shifts) / T, words, col) for each vector, every lane
// at `col`, lane j shifted by shifts[j].
template <typename scalar_t, typename acc_t, typename Visit>
void visit_row_tile(const Problem<acc_t>& problem, const Operand<const scalar_t>& x, const TileRows& rows,
                    const uint64_t* row_base, const acc_t* shifts, const Visit& visit) {
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
        const Vec shifted = Vec::loadu(x_chunk[c] + lane) - Vec::loadu(shifts + lane);
        visit(h, scale(shifted), column_words(words, c) + lane, c0 + c);
      }
    }
  }
}

// z = x' + g of one vector, x' = (x - m) / T already: the contract's g from the words w, in the math dtype.
template <typename acc_t>
C10_ALWAYS_INLINE Vectorized<acc_t> scores(const Vectorized<acc_t>& x, const uint32_t* w) {
  return x + gumbel_from_exponential(exponential_from_words<acc_t>(w));
}

// Runs column_fn(task, r, row, begin, end, shift) on every (row, segment) of the column-tile path, `task` = r *
// segments a row + segment, `row` the row's first logit and `shift` its m; or tile_fn(r0, count, row_base, rows,
// shifts) on every row tile of the row-tile path, shifts[j] the m of lane j; in parallel.
template <typename scalar_t, typename acc_t, typename ColumnFn, typename TileFn>
void parallel_rows(const Problem<acc_t>& problem, const Operand<const scalar_t>& x, const ColumnFn& column_fn,
                   const TileFn& tile_fn) {
  if (use_column_tiles(problem.n_cols, x.s1)) {
    const Segments segments = row_segments(problem.rows, problem.n_cols);
    auto row_of = [&](int64_t r) { return x.data + (r / problem.inner) * x.s0 + (r % problem.inner) * x.s2; };
    // A row of one segment finds its m in its own task, just before its keys, which then read it from cache (a
    // 128256-float row is 0.5 MiB: L2 is 512 KiB a core here, and the rest is in L3); a pass of its own over
    // (64, 128256) would read the logits from memory twice. The max pass itself is not hidden: it streams the row
    // from memory with nothing to overlap, +10-20% at (64, 128256) fp32 on a loaded 2-core EPYC VM; computing the
    // max of the next row during this one's keys measured no better. Rows cut into segments (fewer than
    // kMinTasks rows) need m before any segment's keys: a first parallel pass takes each segment's max, ~8 column
    // tiles a task (the max costs a few percent of a key an element).
    std::vector<acc_t> segmented_shifts(segments.per_row > 1 ? problem.rows : 0);
    if (segments.per_row > 1) {
      std::vector<acc_t> segment_max(problem.rows * segments.per_row);
      const int64_t max_grain = std::max<int64_t>(1, 8 * kGrainElements / segments.columns);
      at::parallel_for(0, problem.rows * segments.per_row, max_grain, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
          const int64_t r = task / segments.per_row, first = task % segments.per_row * segments.columns;
          const int64_t last = std::min(problem.n_cols, first + segments.columns);
          segment_max[task] = contiguous_max<scalar_t, acc_t>(row_of(r), first, last);
        }
      });
      for (int64_t r = 0; r < problem.rows; ++r) {
        const acc_t* maxima = segment_max.data() + r * segments.per_row;
        acc_t x_max = maxima[0];
        for (int64_t s = 1; s < segments.per_row; ++s) x_max = nan_propagating_max(x_max, maxima[s]);
        segmented_shifts[r] = row_shift_of(x_max);
      }
    }
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::min(segments.columns, problem.n_cols));
    at::parallel_for(0, problem.rows * segments.per_row, grain, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t r = task / segments.per_row, first = task % segments.per_row * segments.columns;
        const scalar_t* row = row_of(r);
        const acc_t shift = segments.per_row > 1
                                ? segmented_shifts[r]
                                : row_shift_of(contiguous_max<scalar_t, acc_t>(row, 0, problem.n_cols));
        column_fn(task, r, row, first, std::min(problem.n_cols, first + segments.columns), shift);
      }
    });
    return;
  }
  parallel_tiles(problem, 0, [&](int64_t r0, int count, const uint64_t* row_base, acc_t*) {
    const TileRows rows = tile_rows(r0, count, problem.inner, x.s0, x.s2);
    acc_t shifts[kLanes];
    row_tile_shifts(problem, x, rows, shifts);
    tile_fn(r0, count, row_base, rows, shifts);
  });
}

}  // namespace gumbel_fused
