// gumbel_max for CPU tensors: one draw a row, argmax((x - m) / T + g) with m the row max of x, fused: the logits
// are read from memory once (the pass for m brings them into cache for the keys) and one int64 is written a row;
// no softmax, no noise tensor. The scores come from sampling.h (row tiles, or column tiles for long contiguous
// rows, split between threads), and the argmax from kernel_common.h's argmax_step, which skips g's logs wherever
// a cheap bound shows the element cannot win (noise.h).
#include "kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include <vector>

#include "sampling.h"

namespace gumbel_fused {
namespace {

// The best draw of a row tile's lanes, or of a column tile's (lane j's column is its index + kChunk * j).
template <typename acc_t>
struct Best {
  Draw<acc_t> draw{-std::numeric_limits<acc_t>::infinity(), -1};
  bool nan = false;

  void merge(acc_t z, int64_t col) {
    if (std::isnan(z)) {
      nan = true;
    } else if (drawn_before(Draw<acc_t>{z, col}, draw)) {
      draw = {z, col};
    }
  }
  void merge(const Best& other) {
    nan = nan || other.nan;
    merge(other.draw.z, other.draw.col);
  }
  int64_t result() const { return undefined_row(draw.z, nan) ? -1 : draw.col; }
};

// Folds one vector of scores into the running argmax; z = x' + g, with g's logs pruned (argmax_step). Every key
// of a row has the same shift, so the bound x' + bound(w) is compared with the running best of the shifted keys:
// the pruning is the unshifted one's, moved by the row's constant.
template <typename acc_t>
struct ArgmaxVisit {
  RowArgmax<acc_t>& argmax;
  const DivideByTau<acc_t> unit{acc_t(1)};  // x' arrives shifted and divided by T: z = x' + g
  void operator()(int h, const Vectorized<acc_t>& x, const uint32_t* w, int64_t col) const {
    argmax_step(argmax, h, x, w, col, unit, can_prune(acc_t(1), col));
  }
};

template <typename scalar_t, typename acc_t>
void gumbel_max_kernel(const Problem<acc_t>& problem, const at::Tensor& logits, int64_t* out) {
  const auto x = operand(logits.const_data_ptr<scalar_t>(), logits);
  const bool columns = use_column_tiles(problem.n_cols, x.s1);
  const Segments segments = row_segments(problem.rows, problem.n_cols);
  std::vector<Best<acc_t>> partial(columns ? problem.rows * segments.per_row : 0);
  parallel_rows(
      problem, x,
      [&](int64_t task, int64_t r, const scalar_t* row, int64_t begin, int64_t end, acc_t shift) {
        RowArgmax<acc_t> argmax;
        visit_column_tiles(problem, row, r, begin, end, shift, ArgmaxVisit<acc_t>{argmax});
        acc_t max[kLanes];
        typename RowArgmax<acc_t>::index_t arg[kLanes];
        for (int h = 0; h < RowArgmax<acc_t>::H; ++h) {
          argmax.best[h].store(max + h * Vectorized<acc_t>::size());
          argmax.arg[h].store(arg + h * Vectorized<acc_t>::size());
        }
        for (int j = 0; j < kLanes; ++j) partial[task].merge(max[j], arg[j] + int64_t{kChunk} * j);
      },
      [&](int64_t r0, int count, const uint64_t* row_base, const TileRows& rows, const acc_t* shifts) {
        RowArgmax<acc_t> argmax;
        visit_row_tile(problem, x, rows, row_base, shifts, ArgmaxVisit<acc_t>{argmax});
        acc_t max[kLanes];
        typename RowArgmax<acc_t>::index_t hot[kLanes];
        argmax.result(max, hot);  // -1 where the max is not finite: NaN (maximum propagates it), +inf or -inf
        for (int j = 0; j < count; ++j) out[r0 + j] = hot[j];
      });
  for (int64_t r = 0; columns && r < problem.rows; ++r) {  // segments in column order: ties keep the first
    Best<acc_t> best;
    for (int64_t s = 0; s < segments.per_row; ++s) best.merge(partial[r * segments.per_row + s]);
    out[r] = best.result();
  }
}

}  // namespace

at::Tensor gumbel_max_cpu(const at::Tensor& logits, int64_t seed, double temperature) {
  check_operand(logits, "logits");
  at::Tensor out = at::empty({logits.size(0), logits.size(2)}, logits.options().dtype(at::kLong));
  if (logits.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "gumbel_max_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;  // fp32 math for fp16/bf16/fp32, fp64 for fp64
    gumbel_max_kernel<scalar_t, acc_t>(make_problem<acc_t>(logits, seed, temperature), logits,
                                       out.mutable_data_ptr<int64_t>());
  });
  return out;
}

}  // namespace gumbel_fused
