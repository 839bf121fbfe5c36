// Cross-entropy in the vocab-parallel form (Megatron's): each TP rank holds the logits of its
// vocabulary blocks and reduces them to a local max and sum (stage 1); the model all-reduces
// the max, rescales the sums to it (stage 2) and all-reduces them, so the full logits are
// never gathered. With one block {0, 0, V} and no all-reduce this is the ordinary
// cross-entropy.
#include <cmath>

#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

namespace {
int64_t local_col(int64_t id, const std::vector<VocabBlock>& blocks) {
  for (auto& b : blocks)
    if (id >= b.begin && id < b.begin + b.len) return b.col + id - b.begin;
  return -1;
}
}  // namespace

void CpuBackend::ce_stats(const float* logits, int64_t N, int64_t V, const int32_t* targets,
                          const std::vector<VocabBlock>& blocks, float* m, float* s, float* z) {
  for (int64_t n = 0; n < N; ++n) {
    const float* l = logits + n * V;
    // m = max_v l_v, then s = sum_v exp(l_v - m) (no exp overflows), accumulated in double
    // because V reaches 200k. A CPU row stays in cache, so two loops read memory once.
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; ++v) mx = l[v] > mx ? l[v] : mx;
    double acc = 0.0;
    for (int64_t v = 0; v < V; ++v) acc += std::exp(double(l[v] - mx));
    m[n] = mx;
    s[n] = float(acc);
    // z = l_target on the rank whose blocks hold the target, 0 elsewhere (summed over TP).
    int64_t c = local_col(targets[n], blocks);
    z[n] = c >= 0 ? l[c] : 0.0f;
  }
}

void CpuBackend::ce_rescale(const float* m, const float* mg, int64_t N, float* s) {
  // sum_v exp(l_v - mg) = exp(m - mg) * sum_v exp(l_v - m)
  for (int64_t n = 0; n < N; ++n) s[n] *= std::exp(m[n] - mg[n]);
}

void CpuBackend::ce_backward(float* logits, int64_t N, int64_t V, const float* m, const float* s,
                             const int32_t* targets, const std::vector<VocabBlock>& blocks,
                             int32_t ignore_index, float scale, Use) {
  for (int64_t n = 0; n < N; ++n) {
    float* l = logits + n * V;
    if (targets[n] == ignore_index) {
      for (int64_t v = 0; v < V; ++v) l[v] = 0.0f;
      continue;
    }
    // dloss/dl_v = softmax_v - [v == target], times the caller's scale (1/#targets etc.)
    const float inv = scale / s[n];
    for (int64_t v = 0; v < V; ++v) l[v] = std::exp(l[v] - m[n]) * inv;
    int64_t c = local_col(targets[n], blocks);
    if (c >= 0) l[c] -= scale;
  }
}

}  // namespace autotp
