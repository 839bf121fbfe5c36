#pragma once
// The AdamW update of one contiguous run of elements, in the exact operation order of
// torch.optim.AdamW (single-tensor path, amsgrad=False, maximize=False):
//
//   p    = p * (1 - lr * wd)                      decoupled weight decay (decay slots only)
//   m    = m + (1 - beta1) * (g - m)              torch: exp_avg.lerp_(g, 1 - beta1)
//   v    = v * beta2 + (1 - beta2) * g * g        torch: exp_avg_sq.mul_(beta2).addcmul_(g, g)
//   bc1  = 1 - beta1^t,  bc2 = 1 - beta2^t        t = step count after increment (1, 2, ...)
//   den  = sqrt(v) / sqrt(bc2) + eps
//   p    = p + (-lr / bc1) * m / den
//
// Scalars are computed in double, like Python floats, and rounded to float where torch hands
// them to a float32 kernel; element arithmetic is float32.
#include <cstddef>
#include <cstdint>

#include "config/ds_config.hpp"

namespace autotp {

// The per-step constants of the update above.
struct AdamWStep {
  float decay_factor = 1.0f;  // 1 - lr * wd
  float one_minus_beta1 = 0.1f, beta2 = 0.999f, one_minus_beta2 = 0.001f;
  float bc2_sqrt = 1.0f, eps = 1e-8f;
  float neg_step_size = 0.0f;  // -lr / bc1

  // t: the step number being taken (1 for the first update).
  static AdamWStep make(const OptimizerConfig& opt, double lr, int64_t t);
};

// One update of n elements. g is read as g * grad_scale (the clipping coefficient, 1 = none);
// decay = false skips the weight-decay factor (torch param group with weight_decay 0).
void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const AdamWStep& s,
                  bool decay, float grad_scale);

}  // namespace autotp
