#pragma once
// Learning-rate schedules of DeepSpeed's runtime/lr_schedules.py, from the ds_config
// "scheduler" block. lr(k) is DeepSpeed's get_lr() at last_batch_iteration = k, k = 0, 1, ...
// With W = max(2, warmup_num_steps) (DeepSpeed's floor), T = total_num_steps, base = the
// optimizer lr, r0 = warmup_min_ratio and w(k) the warmup_type curve (linear: k / W;
// log, DeepSpeed's default: ln(k + 1) / ln W):
//
//   ""              lr = base
//   WarmupLR        k < W: base * (r0 + (1 - r0) * w(k));  then base
//   WarmupDecayLR   k < W: as WarmupLR;  then base * (r0 + (1 - r0) * max(0, (T - k) / max(1, T -
//   W))) WarmupCosineLR  k < W: as WarmupLR;  then base * max(0, rc + (1 - rc) * (1 + cos(pi * q))
//   / 2),
//                   q = (k - W + 1) / (T - W), rc = cos_min_ratio
//
// WarmupLR and WarmupDecayLR are written in DeepSpeed as min_lr + (max_lr - min_lr) * gamma;
// the ds_config parser sets base = warmup_max_lr and r0 = warmup_min_lr / warmup_max_lr, which
// is the same curve. So WarmupDecayLR ends at warmup_min_lr (0 by default), as in DeepSpeed.
//
// Differences from DeepSpeed, on purpose:
// - WarmupCosineLR: DeepSpeed's q keeps growing past T, so its lr climbs back up after
//   total_num_steps; here q stops at 1 and the lr stays at cos_min_ratio * base.
// - DeepSpeed's engine steps the scheduler after each optimizer step, so its update k uses
//   lr(k - 1), and its first update the value before any step (0 for WarmupCosineLR). The
//   trainer applies lr(k) to update k (k = updates done so far): no update is wasted at lr 0.
// - An unknown warmup_type is an error (DeepSpeed warns and falls back to log).
#include <cstdint>

#include "config/ds_config.hpp"

namespace autotp {

class LrSchedule {
 public:
  // Throws Error naming the scheduler field when the config cannot define a schedule.
  LrSchedule(const SchedulerConfig& cfg, double base_lr);
  double lr(int64_t step) const;
  double base_lr() const { return base_; }

 private:
  enum class Kind { Constant, Warmup, WarmupDecay, WarmupCosine };
  double warmup_fraction(int64_t step) const;
  Kind kind_ = Kind::Constant;
  bool log_warmup_ = true;
  double base_;
  int64_t warmup_steps_ = 2, total_steps_ = 0;
  double min_ratio_ = 0.0, cos_min_ratio_ = 0.0;
};

}  // namespace autotp
