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
// them to a float32 kernel; element arithmetic is float32. Backend::adamw runs the element
// part (kernels/cpu/adamw.cpp, kernels/cuda).
#include <cstdint>

#include "config/ds_config.hpp"
#include "kernels/backend.hpp"

namespace autotp {

// t: the step number being taken (1 for the first update).
AdamWStep adamw_step(const OptimizerConfig& opt, double lr, int64_t t);

}  // namespace autotp
