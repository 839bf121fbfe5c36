#include "optim/lr_schedule.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace autotp {

LrSchedule::LrSchedule(const SchedulerConfig& cfg, double base_lr) : base_(base_lr) {
  check(std::isfinite(base_lr) && base_lr >= 0, "ds_config optimizer.params.lr ", base_lr,
        " must be a non-negative number");
  if (cfg.type.empty()) return;
  if (cfg.type == "WarmupLR")
    kind_ = Kind::Warmup;
  else if (cfg.type == "WarmupDecayLR")
    kind_ = Kind::WarmupDecay;
  else if (cfg.type == "WarmupCosineLR")
    kind_ = Kind::WarmupCosine;
  else
    fail("ds_config scheduler.type '", cfg.type,
         "' is not supported: use WarmupLR, WarmupDecayLR or WarmupCosineLR, or leave the "
         "scheduler out for a constant learning rate");
  check(cfg.warmup_type == "log" || cfg.warmup_type == "linear",
        "ds_config scheduler.params.warmup_type '", cfg.warmup_type,
        "' must be \"log\" or \"linear\"");
  log_warmup_ = cfg.warmup_type == "log";
  check(cfg.warmup_num_steps >= 0, "ds_config scheduler.params.warmup_num_steps ",
        cfg.warmup_num_steps, " must be non-negative");
  check(cfg.warmup_min_ratio >= 0 && cfg.warmup_min_ratio <= 1,
        "ds_config scheduler warmup start ratio ", cfg.warmup_min_ratio,
        " must lie in [0, 1] (warmup_min_ratio, or warmup_min_lr / warmup_max_lr)");
  warmup_steps_ = std::max<int64_t>(2, cfg.warmup_num_steps);  // DeepSpeed: max(2, n)
  total_steps_ = cfg.total_num_steps;
  min_ratio_ = cfg.warmup_min_ratio;
  cos_min_ratio_ = cfg.cos_min_ratio;
  if (kind_ == Kind::WarmupDecay || kind_ == Kind::WarmupCosine)
    check(total_steps_ > warmup_steps_, "ds_config scheduler.params.total_num_steps ", total_steps_,
          " must be larger than the warmup (", warmup_steps_,
          " steps; DeepSpeed warms up for at least 2) for ", cfg.type);
  if (kind_ == Kind::WarmupCosine)
    check(cos_min_ratio_ >= 0 && cos_min_ratio_ <= 1, "ds_config scheduler.params.cos_min_ratio ",
          cos_min_ratio_, " must lie in [0, 1]");
}

double LrSchedule::warmup_fraction(int64_t k) const {
  if (log_warmup_) return std::log(double(k + 1)) / std::log(double(warmup_steps_));
  return double(k) / double(warmup_steps_);
}

double LrSchedule::lr(int64_t k) const {
  check(k >= 0, "learning-rate schedule: step ", k, " must be non-negative");
  if (kind_ == Kind::Constant) return base_;
  if (k < warmup_steps_) return base_ * (min_ratio_ + (1.0 - min_ratio_) * warmup_fraction(k));
  switch (kind_) {
    case Kind::WarmupDecay: {
      const double left =
          double(total_steps_ - k) / double(std::max<int64_t>(1, total_steps_ - warmup_steps_));
      return base_ * (min_ratio_ + (1.0 - min_ratio_) * std::max(0.0, left));
    }
    case Kind::WarmupCosine: {
      const double q =
          std::min(1.0, double(k - warmup_steps_ + 1) / double(total_steps_ - warmup_steps_));
      const double c = (1.0 + std::cos(M_PI * q)) / 2.0;
      return base_ * std::max(0.0, cos_min_ratio_ + (1.0 - cos_min_ratio_) * c);
    }
    default:
      return base_;
  }
}

}  // namespace autotp
