#include "optim/adamw.hpp"

#include <cmath>

namespace autotp {

AdamWStep adamw_step(const OptimizerConfig& opt, double lr, int64_t t) {
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

}  // namespace autotp
