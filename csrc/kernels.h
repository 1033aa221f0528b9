// Entry points of the C++ CPU backend, shared by the kernels (gumbel_softmax_cpu.cpp) and the Python
// bindings (bindings.cpp). Tensors are the op boundary's (outer, K, inner) views, softmax over dim 1.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace gumbel_fused {

// softmax((logits + g) / tau) over dim 1, or its exact one-hot argmax when `hard`; contiguous output
// of the logits' dtype. `seed` is a 0-dim int64 CPU tensor. Same semantics as gumbel_softmax_fwd_ref.
at::Tensor gumbel_softmax_fwd_cpu(const at::Tensor& logits, const at::Tensor& seed, double tau, bool hard);

// y * (grad - sum(grad * y)) / tau over dim 1, with y = `saved`, or regenerated from `saved` = logits
// and the seed when `recompute`. Same semantics as gumbel_softmax_bwd_ref.
at::Tensor gumbel_softmax_bwd_cpu(const at::Tensor& grad, const at::Tensor& saved, const at::Tensor& seed,
                                  double tau, bool recompute);

// Debug views of the kernels' own noise, for the golden tests: for logical `rows` (1-D int64) of a K-column
// problem, returns [words (int64 holding the uint32 words), u (fp32, unclamped), g (fp32), g (fp64)],
// each of shape (len(rows), K).
std::vector<at::Tensor> philox_uniform_cpu(int64_t seed, const at::Tensor& rows, int64_t n_cols);

// The same word -> uniform -> Gumbel path for given words (1-D int64 holding uint32 values):
// returns [u (fp32, unclamped), g (fp32), g (fp64)].
std::vector<at::Tensor> gumbel_from_words_cpu(const at::Tensor& words);

// Checks the hard forward's pruning bound (noise.h) against the computed Gumbel value for every word in
// first_word, first_word + stride, ... <= last_word: returns [words checked, violations, max slack of the bound].
std::vector<double> check_gumbel_bound(int64_t first_word, int64_t last_word, int64_t stride);

// Lanes of at::vec::Vectorized<float> and <double> in this build, and its CPU_CAPABILITY.
std::vector<int64_t> vec_sizes();
std::string cpu_capability();

}  // namespace gumbel_fused
