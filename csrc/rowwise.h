// Tensors in the caller's shape, with the categories on `dim`, seen as the kernels' (outer, K, inner) views.
// The bindings make these views (and view the results back) in C++: from Python each is a tensor call of
// several microseconds, as much as a whole kernel at small sizes (measured on the CI machine, see
// gumbel_fused/_ops/_dispatch.py), where in C++ it costs a fraction of one.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/accumulate.h>

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

}  // namespace gumbel_fused
