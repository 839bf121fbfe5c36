// DeepSpeed's schedules (runtime/lr_schedules.py) at hand-computed points; base lr 1e-3.
#include <gtest/gtest.h>

#include "config/ds_config.hpp"
#include "core/error.hpp"
#include "optim/lr_schedule.hpp"

using namespace autotp;

namespace {

SchedulerConfig sched(const std::string& type, int64_t warmup, int64_t total, double min_ratio,
                      double cos_min = 0.0, const std::string& warmup_type = "linear") {
  SchedulerConfig c;
  c.type = type;
  c.warmup_type = warmup_type;
  c.warmup_num_steps = warmup;
  c.total_num_steps = total;
  c.warmup_min_ratio = min_ratio;
  c.cos_min_ratio = cos_min;
  return c;
}

std::string error_of(const SchedulerConfig& c) {
  try {
    LrSchedule s(c, 1e-3);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(LrSchedule, ConstantWithoutAScheduler) {
  LrSchedule s(SchedulerConfig{}, 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(0), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(12345), 1e-3);
}

TEST(LrSchedule, WarmupLRLinear) {
  LrSchedule s(sched("WarmupLR", 10, 0, 0.1), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(0), 1e-4);                      // 0.1 * lr
  EXPECT_DOUBLE_EQ(s.lr(5), 5.5e-4);                    // (0.1 + 0.9 * 5/10) * lr
  EXPECT_DOUBLE_EQ(s.lr(9), 1e-3 * (0.1 + 0.9 * 0.9));  // last warmup step: 0.91 * lr
  EXPECT_DOUBLE_EQ(s.lr(10), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(100000), 1e-3);
}

// DeepSpeed floors warmup_num_steps at 2 (it divides by log(warmup_num_steps)).
TEST(LrSchedule, WarmupOfZeroStepsIsTwoLikeDeepSpeed) {
  LrSchedule s(sched("WarmupLR", 0, 0, 0.0), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(0), 0.0);
  EXPECT_DOUBLE_EQ(s.lr(1), 5e-4);
  EXPECT_DOUBLE_EQ(s.lr(2), 1e-3);
}

TEST(LrSchedule, WarmupLRLogIsDeepSpeedsDefaultShape) {
  LrSchedule s(sched("WarmupLR", 10, 0, 0.0, 0.0, "log"), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(0), 0.0);                     // ln 1 / ln 10
  EXPECT_NEAR(s.lr(4), 6.989700043360187e-4, 1e-18);  // ln 5 / ln 10
  EXPECT_DOUBLE_EQ(s.lr(9), 1e-3);                    // ln 10 / ln 10
  EXPECT_DOUBLE_EQ(s.lr(10), 1e-3);
}

TEST(LrSchedule, WarmupDecayLR) {
  LrSchedule s(sched("WarmupDecayLR", 10, 110, 0.0), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(5), 5e-4);
  EXPECT_DOUBLE_EQ(s.lr(10), 1e-3);   // (110 - 10) / (110 - 10)
  EXPECT_DOUBLE_EQ(s.lr(60), 5e-4);   // (110 - 60) / 100
  EXPECT_DOUBLE_EQ(s.lr(109), 1e-5);  // 1 / 100
  EXPECT_DOUBLE_EQ(s.lr(110), 0.0);
  EXPECT_DOUBLE_EQ(s.lr(500), 0.0);
  // DeepSpeed decays to warmup_min_lr, not to 0: min + (max - min) * gamma.
  LrSchedule m(sched("WarmupDecayLR", 10, 110, 0.2), 1e-3);
  EXPECT_DOUBLE_EQ(m.lr(0), 2e-4);
  EXPECT_DOUBLE_EQ(m.lr(60), 6e-4);  // 0.2 + 0.8 * 0.5
  EXPECT_DOUBLE_EQ(m.lr(110), 2e-4);
}

TEST(LrSchedule, WarmupCosineLR) {
  LrSchedule s(sched("WarmupCosineLR", 10, 110, 0.05, 0.1), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(0), 5e-5);     // warmup_min_ratio * lr
  EXPECT_DOUBLE_EQ(s.lr(5), 5.25e-4);  // 0.05 + 0.95 * 0.5
  // DeepSpeed's cosine phase starts one step in: q = (k - W + 1) / (T - W).
  EXPECT_NEAR(s.lr(10), 9.997779521645793e-4, 1e-15);  // 0.1 + 0.9 * (1 + cos(pi/100)) / 2
  EXPECT_NEAR(s.lr(59), 5.5e-4, 1e-15);                // q = 1/2: 0.1 + 0.9 / 2
  EXPECT_NEAR(s.lr(109), 1e-4, 1e-15);                 // q = 1: cos_min_ratio * lr
  // DeepSpeed would climb again (0.10022 * lr at 110); we hold the floor.
  EXPECT_NEAR(s.lr(110), 1e-4, 1e-15);
  EXPECT_NEAR(s.lr(1000), 1e-4, 1e-15);
}

TEST(LrSchedule, BadConfigsNameTheField) {
  EXPECT_NE(error_of(sched("OneCycle", 10, 100, 0)).find("scheduler.type 'OneCycle'"),
            std::string::npos);
  EXPECT_NE(error_of(sched("WarmupCosineLR", 10, 10, 0)).find("total_num_steps 10"),
            std::string::npos);
  EXPECT_NE(error_of(sched("WarmupDecayLR", 10, 0, 0)).find("total_num_steps 0"),
            std::string::npos);
  EXPECT_NE(error_of(sched("WarmupLR", -1, 0, 0)).find("warmup_num_steps -1"), std::string::npos);
  EXPECT_NE(error_of(sched("WarmupLR", 10, 0, 0, 0, "cubic")).find("warmup_type 'cubic'"),
            std::string::npos);
  EXPECT_EQ(error_of(sched("WarmupLR", 10, 0, 0)), "");  // WarmupLR needs no total
}

// From a ds_config, through the parser: DeepSpeed's WarmupDecayLR warms from warmup_min_lr to
// warmup_max_lr (the optimizer lr is overridden) and decays back to warmup_min_lr.
TEST(LrSchedule, FromDsConfigWarmupDecayLR) {
  const auto ds = DsConfig::from_json(nlohmann::json::parse(R"({
    "train_batch_size": 8,
    "optimizer": {"type": "AdamW", "params": {"lr": 5e-4}},
    "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": 1e-5, "warmup_max_lr": 1e-3,
                  "warmup_num_steps": 100, "total_num_steps": 1100, "warmup_type": "linear"}}
  })"),
                                      "test.json");
  LrSchedule s(ds.scheduler, ds.optimizer.lr);
  EXPECT_NEAR(s.lr(0), 1e-5, 1e-18);
  EXPECT_NEAR(s.lr(50), 1e-5 + 0.99e-3 * 0.5, 1e-18);   // min + (max - min) * 50/100
  EXPECT_NEAR(s.lr(100), 1e-3, 1e-18);                  // gamma = 1000/1000
  EXPECT_NEAR(s.lr(600), 1e-5 + 0.99e-3 * 0.5, 1e-18);  // gamma = 500/1000
  EXPECT_NEAR(s.lr(1100), 1e-5, 1e-18);
}

// WarmupCosineLR scales the optimizer lr; DeepSpeed's default warmup is logarithmic.
TEST(LrSchedule, FromDsConfigWarmupCosineLRDefaults) {
  const auto ds = DsConfig::from_json(nlohmann::json::parse(R"({
    "train_batch_size": 8,
    "optimizer": {"type": "AdamW", "params": {"lr": 2e-4}},
    "scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 2000}}
  })"),
                                      "test.json");
  LrSchedule s(ds.scheduler, ds.optimizer.lr);
  EXPECT_NEAR(s.lr(0), 0.0, 1e-18);
  EXPECT_NEAR(s.lr(99), 2e-4 * 2.0 / 3.0, 1e-15);  // ln 100 / ln 1000 = 2/3
  // q = (1499 - 1000 + 1) / 1000 = 1/2: cos_min_ratio 1e-4 + (1 - 1e-4) / 2
  EXPECT_NEAR(s.lr(1499), 2e-4 * 0.50005, 1e-15);
  EXPECT_NEAR(s.lr(1999), 2e-4 * 1e-4, 1e-18);
}
