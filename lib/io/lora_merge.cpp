#include <algorithm>
#include <vector>

#include "io/hf_checkpoint.hpp"

namespace autotp {

// delta[o, :] = sum_k B[o, k] * A[k, :], accumulated over k in order for each row (the inner
// loop over `in` is contiguous and vectorises); then W[o, :] += (alpha / r) * delta[o, :].
void lora_merge(float* w, const float* a, const float* b, int64_t out, int64_t in, int64_t r,
                double alpha) {
  const float scale = float(alpha / double(r));
  std::vector<float> delta(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    std::fill(delta.begin(), delta.end(), 0.0f);
    for (int64_t k = 0; k < r; ++k) {
      const float bk = b[o * r + k];
      const float* ak = a + k * in;
      for (int64_t i = 0; i < in; ++i) delta[size_t(i)] += bk * ak[i];
    }
    float* wo = w + o * in;
    for (int64_t i = 0; i < in; ++i) wo[i] += scale * delta[size_t(i)];
  }
}

}  // namespace autotp
