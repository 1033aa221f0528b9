// Tensors in the caller's shape, with the categories on `dim`, seen as the kernels' (outer, K, inner) views,
// and the gumbel_softmax entry points in those terms. The bindings and the autograd node make these views (and
// view the results back) in C++: from Python each is a tensor call of several microseconds, as much as a whole
// kernel at small sizes (measured on the CI machine, see gumbel_fused/_ops/_dispatch.py), where in C++ it costs
// a fraction of one.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/accumulate.h>

#include <optional>
#include <string>

#include "kernels.h"

namespace gumbel_fused {

// The (outer, K, inner) view of `t` with its dimension `dim` in the middle; a copy only when no view exists.
inline at::Tensor rows_view(const at::Tensor& t, int64_t dim) {
  TORCH_CHECK(0 <= dim && dim < t.dim(), "gumbel_fused: dim ", dim, " out of range for a ", t.dim(), "-D tensor");
  const auto sizes = t.sizes();
  if (t.dim() == 3 && dim == 1) return t;
  const int64_t outer = c10::multiply_integers(sizes.begin(), sizes.begin() + dim);
  const int64_t inner = c10::multiply_integers(sizes.begin() + dim + 1, sizes.end());
  return t.reshape({outer, sizes[dim], inner});
}

// A kernel's (outer, M..., inner) result in the caller's terms: `caller`'s shape with M... in place of `dim`.
inline at::Tensor caller_view(const at::Tensor& out, at::IntArrayRef caller, int64_t dim) {
  if (caller.size() == 3 && dim == 1 && out.dim() == 3) return out;
  at::DimVector shape(caller.begin(), caller.begin() + dim);
  shape.append(out.sizes().begin() + 1, out.sizes().end() - 1);
  shape.append(caller.begin() + dim + 1, caller.end());
  return out.view(shape);
}

// gumbel_softmax's entry points of kernels.h in the caller's terms: tensors in the caller's shape, categories on
// `dim`. The bindings (bindings.cpp) and the autograd node (autograd.cpp) both call the kernels through these.
// `sample`: see gumbel_softmax_fwd_cpu; it gets 1 in place of dim.
inline at::Tensor gumbel_softmax_fwd(const at::Tensor& logits, int64_t seed, double tau, bool hard,
                                     int64_t dim, const std::string& estimator, int64_t rao_samples,
                                     at::Tensor* sample = nullptr) {
  const auto y = gumbel_softmax_fwd_cpu(rows_view(logits, dim), seed, tau, hard, estimator, rao_samples, sample);
  if (sample) *sample = caller_view(*sample, logits.sizes(), dim);
  return caller_view(y, logits.sizes(), dim);
}

inline at::Tensor gumbel_softmax_bwd(const at::Tensor& grad, const at::Tensor& saved, int64_t seed,
                                     double tau, bool recompute, int64_t dim, const std::string& estimator,
                                     int64_t rao_samples, const std::optional<at::Tensor>& sample) {
  const auto sample_rows = sample ? std::optional<at::Tensor>(rows_view(*sample, dim)) : std::nullopt;
  const auto dx = gumbel_softmax_bwd_cpu(rows_view(grad, dim), rows_view(saved, dim), seed, tau, recompute, estimator,
                                         rao_samples, sample_rows);
  return caller_view(dx, saved.sizes(), dim);
}

inline at::Tensor sample_index(const at::Tensor& one_hot, int64_t dim) {
  return caller_view(sample_index_cpu(rows_view(one_hot, dim)), one_hot.sizes(), dim);
}

// gumbel_softmax_fwd with its autograd node in C++ (autograd.cpp): the eager CPU call whose logits require grad.
at::Tensor gumbel_softmax_with_grad(const at::Tensor& logits, int64_t seed, double tau, bool hard,
                                    int64_t dim, const std::string& estimator, int64_t rao_samples);

}  // namespace gumbel_fused
