// gumbel_topk for CPU tensors: the k first draws of (x - m) / T + g a row in draw order, m the row max of x
// (sampling.h) (Gumbel-top-k, Kool et al., ICML 2019, arXiv:1903.06059), fused: one read of the logits from memory,
// k int64 written a row, and a partial selection: each row keeps a heap of its k best (score, column) so far, the
// last-drawn on top. An element enters when it is drawn before that top; in a row in random order the i-th
// element does with probability about k / i, so a row of V sees about k (1 + ln(V / k)) heap updates. Everything
// else is the bound test of noise.h: a vector whose every lane's upper bound on z is below its row's heap top
// skips g's logs, as the hard forward does.
#include "kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <vector>

#include "sampling.h"

namespace gumbel_fused {
namespace {

// A row's k best draws so far, in k slots of caller-owned storage: a heap by drawn_before, whose top is the
// draw that comes last. It starts as k placeholders (-inf, column -1), which a real -inf never displaces (it
// is not drawn before them), so slots past a row's drawable categories stay -1.
template <typename acc_t>
struct TopDraws {
  Draw<acc_t>* heap;
  int64_t k;
  bool nan = false;

  TopDraws(Draw<acc_t>* storage, int64_t k_) : heap(storage), k(k_) {
    std::fill_n(heap, k, Draw<acc_t>{-std::numeric_limits<acc_t>::infinity(), -1});
  }
  acc_t threshold() const { return heap[0].z; }
  void offer(const Draw<acc_t>& d) {
    if (std::isnan(d.z)) {
      nan = true;
    } else if (drawn_before(d, heap[0])) {
      std::pop_heap(heap, heap + k, drawn_before<acc_t>);
      heap[k - 1] = d;
      std::push_heap(heap, heap + k, drawn_before<acc_t>);
    }
  }
  // The k slots in draw order (the heap is consumed), as columns; all -1 for an undefined row.
  void write(int64_t* out, int64_t stride) {
    std::sort_heap(heap, heap + k, drawn_before<acc_t>);
    const bool undefined = undefined_row(heap[0].z, nan);
    for (int64_t s = 0; s < k; ++s) out[s * stride] = undefined ? -1 : heap[s].col;
  }
};

// Offers one vector of scores to the heaps of its lanes. Row tiles give each lane (a row) its own heap
// (per_lane); column tiles feed one heap from every lane, lane j holding column col + kChunk * j. Skips g's logs
// when no lane's bound on z reaches its heap's threshold: z <= x' + bound with x' = (x - m) / T, a heap holds keys
// of its row only, all shifted by the same m, and a z strictly below the threshold cannot be drawn before the top
// (fp32 math only, as in argmax_step; fp64 computes every z).
template <typename acc_t>
struct TopkVisit {
  TopDraws<acc_t>* heaps;
  bool per_lane;
  int lane_col_step;
  acc_t* thresholds;  // kLanes: the threshold of each lane's heap

  void operator()(int h, const Vectorized<acc_t>& x, const uint32_t* w, int64_t col) const {
    using Vec = Vectorized<acc_t>;
    const int first_lane = h * Vec::size();
    const Vec threshold = Vec::loadu(thresholds + first_lane);
    if constexpr (std::is_same_v<acc_t, float>) {
      if ((x + gumbel_upper_bound(w) < threshold).zero_mask() == 0) return;
    }
    const Vec z = scores(x, w);
    acc_t lanes[Vec::size()];
    z.store(lanes);
    for (int j = 0; j < Vec::size(); ++j) {
      const int lane = first_lane + j;
      TopDraws<acc_t>& heap = heaps[per_lane ? lane : 0];
      if (!(lanes[j] >= heap.threshold()) && !std::isnan(lanes[j])) continue;  // the common case, one compare
      heap.offer({lanes[j], col + int64_t{lane_col_step} * lane});
      if (per_lane) {
        thresholds[lane] = heap.threshold();
      } else {
        std::fill_n(thresholds, kLanes, heap.threshold());
      }
    }
  }
};

template <typename scalar_t, typename acc_t>
void gumbel_topk_kernel(const Problem<acc_t>& problem, const at::Tensor& logits, int64_t k, int64_t* out) {
  const auto x = operand(logits.const_data_ptr<scalar_t>(), logits);
  const bool columns = use_column_tiles(problem.n_cols, x.s1);
  const Segments segments = row_segments(problem.rows, problem.n_cols);
  const int64_t tasks = columns ? problem.rows * segments.per_row : 0;
  std::vector<Draw<acc_t>> partial(tasks * k);  // each segment's k best, merged per row below
  std::vector<char> partial_nan(tasks);
  // out is (outer, k, inner) contiguous: slot s of row r = o * inner + i at o * k * inner + s * inner + i.
  auto slots_of = [&](int64_t r) { return out + (r / problem.inner) * k * problem.inner + r % problem.inner; };
  parallel_rows(
      problem, x,
      [&](int64_t task, int64_t r, const scalar_t* row, int64_t begin, int64_t end, acc_t shift) {
        TopDraws<acc_t> heap(partial.data() + task * k, k);
        acc_t thresholds[kLanes];
        std::fill_n(thresholds, kLanes, heap.threshold());
        visit_column_tiles(problem, row, r, begin, end, shift,
                           TopkVisit<acc_t>{&heap, false, kChunk, thresholds});
        partial_nan[task] = heap.nan;
      },
      [&](int64_t r0, int count, const uint64_t* row_base, const TileRows& rows, const acc_t* shifts) {
        std::vector<Draw<acc_t>> storage(kLanes * k);
        std::vector<TopDraws<acc_t>> heaps;
        heaps.reserve(kLanes);
        for (int j = 0; j < kLanes; ++j) heaps.emplace_back(storage.data() + j * k, k);
        acc_t thresholds[kLanes];
        std::fill_n(thresholds, kLanes, heaps[0].threshold());
        visit_row_tile(problem, x, rows, row_base, shifts, TopkVisit<acc_t>{heaps.data(), true, 0, thresholds});
        for (int j = 0; j < count; ++j) heaps[j].write(slots_of(r0 + j), problem.inner);
      });
  if (!columns) return;
  const int64_t merge_grain = std::max<int64_t>(1, kGrainElements / (segments.per_row * k));
  at::parallel_for(0, problem.rows, merge_grain, [&](int64_t begin, int64_t end) {
    std::vector<Draw<acc_t>> merged(k);
    for (int64_t r = begin; r < end; ++r) {
      // The row's k first draws are among its segments' k first: select them again from those.
      TopDraws<acc_t> heap(merged.data(), k);
      for (int64_t s = 0; s < segments.per_row; ++s) {
        heap.nan = heap.nan || partial_nan[r * segments.per_row + s];
        for (int64_t i = 0; i < k; ++i) heap.offer(partial[(r * segments.per_row + s) * k + i]);
      }
      heap.write(slots_of(r), problem.inner);
    }
  });
}

}  // namespace

at::Tensor gumbel_topk_cpu(const at::Tensor& logits, int64_t seed, double temperature, int64_t k) {
  check_operand(logits, "logits");
  TORCH_CHECK(0 <= k && k <= logits.size(1), "gumbel_fused: k must be in [0, ", logits.size(1), "], got ", k);
  at::Tensor out = at::empty({logits.size(0), k, logits.size(2)}, logits.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "gumbel_topk_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    gumbel_topk_kernel<scalar_t, acc_t>(make_problem<acc_t>(logits, seed, temperature), logits, k,
                                        out.mutable_data_ptr<int64_t>());
  });
  return out;
}

}  // namespace gumbel_fused
