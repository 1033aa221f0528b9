// Entry points of the C++ CPU backend, shared by the kernels (one .cpp per op: gumbel_softmax.cpp,
// gumbel_max.cpp, gumbel_topk.cpp) and the Python bindings (bindings.cpp). Tensors are the op boundary's
// (outer, K, inner) views, softmax or sampling over dim 1.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace gumbel_fused {

// softmax((logits + g) / tau) over dim 1, or its exact one-hot argmax when `hard`; contiguous output
// of the logits' dtype, for the call's `seed` (docs/DESIGN.md section 3). `estimator` and `rao_samples` pick
// the backward and are only checked (estimators.h). Same semantics as gumbel_softmax_fwd_ref. Given `sample`
// (hard mode), it also sets *sample to each row's category, what sample_index_cpu of the output gives.
at::Tensor gumbel_softmax_fwd_cpu(const at::Tensor& logits, int64_t seed, double tau, bool hard,
                                  const std::string& estimator, int64_t rao_samples, at::Tensor* sample = nullptr);

// y * (grad - sum(grad * y)) / tau over dim 1, with y = `saved`, or regenerated from `saved` = logits
// and the seed when `recompute` (estimator "st"); or another estimator's gradient of the hard sample of
// category `sample` (int64 (outer, 1, inner)), from `saved` = logits (estimators.h). Same semantics as
// gumbel_softmax_bwd_ref.
at::Tensor gumbel_softmax_bwd_cpu(const at::Tensor& grad, const at::Tensor& saved, int64_t seed,
                                  double tau, bool recompute, const std::string& estimator, int64_t rao_samples,
                                  const std::optional<at::Tensor>& sample);

// The category of each row of a hard sample `one_hot` (outer, K, inner): the index of its first nonzero, which
// for a NaN row is 0, as torch.argmax. int64 (outer, 1, inner). Same semantics as sample_index_ref.
at::Tensor sample_index_cpu(const at::Tensor& one_hot);

// One draw a row from softmax(logits / temperature) over dim 1: int64 (outer, inner), -1 for a row with nothing to
// draw from. Same semantics as gumbel_max_ref.
at::Tensor gumbel_max_cpu(const at::Tensor& logits, int64_t seed, double temperature);

// k draws without replacement a row, in draw order: int64 (outer, k, inner). Same semantics as gumbel_topk_ref.
at::Tensor gumbel_topk_cpu(const at::Tensor& logits, int64_t seed, double temperature, int64_t k);

}  // namespace gumbel_fused
