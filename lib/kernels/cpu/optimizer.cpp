// AdamW and the squared norm (the math is in optim/adamw.hpp).
#include <cmath>

#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

void CpuBackend::adamw(float* p, float* m, float* v, const float* g, size_t n, const AdamWStep& s,
                       bool decay, float grad_scale) {
  // torch's lerp switches formula at weight 0.5 to stay exact near the end point.
  const bool small_w = s.one_minus_beta1 < 0.5f;
  for (size_t i = 0; i < n; ++i) {
    const float gi = g[i] * grad_scale;  // torch scales the gradient in place before step()
    float pi = p[i];
    if (decay) pi = pi * s.decay_factor;
    const float mi = small_w ? m[i] + s.one_minus_beta1 * (gi - m[i])
                             : gi - (gi - m[i]) * (1.0f - s.one_minus_beta1);
    const float vi = v[i] * s.beta2 + s.one_minus_beta2 * gi * gi;
    const float den = std::sqrt(vi) / s.bc2_sqrt + s.eps;
    p[i] = pi + s.neg_step_size * mi / den;
    m[i] = mi;
    v[i] = vi;
  }
}

double CpuBackend::sum_squares(const float* x, size_t n) {
  double ss = 0.0;
  for (size_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  return ss;
}

}  // namespace autotp
