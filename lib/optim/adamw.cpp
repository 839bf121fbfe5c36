#include "optim/adamw.hpp"

#include <cmath>

namespace autotp {

AdamWStep AdamWStep::make(const OptimizerConfig& opt, double lr, int64_t t) {
  AdamWStep s;
  s.decay_factor = float(1.0 - lr * opt.weight_decay);
  s.one_minus_beta1 = float(1.0 - opt.beta1);
  s.beta2 = float(opt.beta2);
  s.one_minus_beta2 = float(1.0 - opt.beta2);
  const double bc1 = 1.0 - std::pow(opt.beta1, double(t));
  const double bc2 = 1.0 - std::pow(opt.beta2, double(t));
  s.bc2_sqrt = float(std::sqrt(bc2));
  s.eps = float(opt.eps);
  s.neg_step_size = float(-(lr / bc1));
  return s;
}

void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const AdamWStep& s,
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

}  // namespace autotp
