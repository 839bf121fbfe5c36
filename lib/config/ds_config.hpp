#pragma once
// The DeepSpeed config (ds_config.json) that users already write for AutoTP. We read the keys
// autotp acts on; "auto" values are resolved later from the command line. The tensor_parallel
// block is kept as JSON and interpreted by partition/partition_config.hpp.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace autotp {

struct OptimizerConfig {
  std::string type = "AdamW";
  double lr = 3e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

struct SchedulerConfig {
  std::string type;  // "" (constant), "WarmupLR", "WarmupDecayLR", "WarmupCosineLR"
  int64_t warmup_num_steps = 0, total_num_steps = 0;
  double warmup_min_ratio = 0.0, cos_min_ratio = 0.1;
};

struct DsConfig {
  std::string source;        // file name, for messages
  int64_t autotp_size = 0;   // tensor_parallel.autotp_size; 0 = not given
  int64_t data_parallel_size = 0;
  int zero_stage = 0;        // zero_optimization.stage
  int64_t train_batch_size = 0, train_micro_batch_size_per_gpu = 0,
          gradient_accumulation_steps = 0;  // 0 = not given ("auto")
  double gradient_clipping = 0.0;          // 0 = off
  bool bf16 = false;
  int64_t steps_per_print = 10;
  int64_t seed = 1234;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  nlohmann::json tensor_parallel = nlohmann::json::object();
  nlohmann::json raw;

  static DsConfig from_json(const nlohmann::json& j, const std::string& source);
  static DsConfig from_file(const std::string& path);
};

}  // namespace autotp
