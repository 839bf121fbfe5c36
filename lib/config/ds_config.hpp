#pragma once
// The DeepSpeed config (ds_config.json) that users already write for AutoTP. We read the keys
// autotp acts on; "auto" values are resolved later from the command line. The tensor_parallel
// block is kept as JSON and interpreted by partition/partition_config.hpp. Other top-level keys
// are ignored, as DeepSpeed has many that do not apply here.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace autotp {

// "Adam" and "AdamW" are both AdamW with decoupled weight decay: DeepSpeed's adam_w_mode
// defaults to true for both names (FusedAdam/CPUAdam). adam_w_mode: false (L2-coupled Adam) is
// rejected rather than silently changed. Defaults: with an optimizer block, DeepSpeed's
// (FusedAdam: lr 1e-3, betas 0.9/0.999, eps 1e-8, weight_decay 0); without one, the values below.
struct OptimizerConfig {
  std::string type = "AdamW";
  double lr = 3e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

// DeepSpeed's lr_schedules.py: WarmupLR warms from warmup_min_lr to warmup_max_lr, then stays;
// WarmupDecayLR then decays linearly back to warmup_min_lr at total_num_steps; WarmupCosineLR
// scales the optimizer's lr by a ratio that warms from warmup_min_ratio to 1, then follows a
// cosine down to cos_min_ratio. Defaults are DeepSpeed's. For WarmupLR and WarmupDecayLR, which
// ignore the optimizer's lr in DeepSpeed, the parser sets optimizer.lr = warmup_max_lr (0.001
// when absent, optimizer.lr when "auto") and warmup_min_ratio = warmup_min_lr / warmup_max_lr,
// so every schedule is a ratio of optimizer.lr. warmup_type is DeepSpeed's default "log" unless
// given.
struct SchedulerConfig {
  std::string type;  // "" (constant), "WarmupLR", "WarmupDecayLR", "WarmupCosineLR"
  int64_t warmup_num_steps = 1000, total_num_steps = 0;
  double warmup_min_ratio = 0.0, cos_min_ratio = 0.0001;
  double warmup_min_lr = 0.0, warmup_max_lr = 0.001;
  std::string warmup_type = "log";  // "log" or "linear"
};

// DeepSpeed's activation_checkpointing block. DeepSpeed turns checkpointing on in the model
// (transformers' gradient_checkpointing_enable()) and reads this block for how; autotp has no
// model code to edit, so the block's presence turns it on (autotp-train and autotp-bench
// --activation_checkpointing true/false override it either way). What autotp does is full layer
// recompute (model/phi3_model.hpp): each layer's input is the checkpoint. The keys:
//   partition_activations           false only: each checkpoint stays whole on every TP rank
//   cpu_checkpointing               false only: the checkpoints stay in device memory
//   contiguous_memory_optimization  either: honoured as is, the checkpoints are buffers
//                                   allocated once, side by side, before the first step
//   number_checkpoints              null, or the number of layers (a checkpoint per layer)
//   synchronize_checkpoint_boundary either: true synchronizes the device after each layer's
//                                   forward and recompute, as DeepSpeed does (for timing)
//   profile                         false only: autotp-bench --profile times the step
// Any other key, or a value that cannot be honoured, is an Error naming the key.
struct ActivationCheckpointingConfig {
  bool enabled = false;  // the block was given
  bool synchronize_checkpoint_boundary = false;
  int64_t number_checkpoints = 0;  // 0 = null / not given (a checkpoint per layer)
  // Once the model is known: number_checkpoints must be its number of layers (or null).
  void check_layers(int64_t num_layers, const std::string& source) const;
  // Whether checkpointing is on: flag 1 / 0 from a command line (--activation_checkpointing
  // true / false), -1 (not given) = whether the block is there.
  bool on(int flag) const { return flag < 0 ? enabled : flag > 0; }
};

struct DsConfig {
  std::string source;       // file name, for messages
  int64_t autotp_size = 0;  // tensor_parallel.autotp_size; 0 = not given
  int64_t data_parallel_size = 0;
  int zero_stage = 0;  // zero_optimization.stage
  int64_t train_batch_size = 0, train_micro_batch_size_per_gpu = 0,
          gradient_accumulation_steps = 0;  // 0 = not given ("auto")
  double gradient_clipping = 0.0;           // 0 = off
  bool bf16 = false;
  int64_t steps_per_print = 10;
  int64_t seed = 1234;
  bool has_seed = false;  // "seed" was given
  OptimizerConfig optimizer;
  bool has_optimizer = false;  // an "optimizer" block was given
  SchedulerConfig scheduler;
  ActivationCheckpointingConfig activation_checkpointing;
  nlohmann::json tensor_parallel = nlohmann::json::object();
  nlohmann::json raw;

  // Both accept // and /* */ comments. Throw Error naming the file and the field.
  static DsConfig from_json(const nlohmann::json& j, const std::string& source);
  static DsConfig from_file(const std::string& path);

  // DeepSpeed's batch rule, train_batch_size = micro * gradient_accumulation_steps * dp: fills
  // in whichever of the three was not given (micro and accumulation default to what DeepSpeed
  // picks) and throws Error naming the fields when the given ones disagree.
  void resolve_batch(int64_t dp);

  // Without an optimizer block (the seed's config has none) DeepSpeed would not train; autotp
  // trains with `optimizer` as it stands, and says so once with this line: the file and every
  // value used.
  std::string optimizer_defaults_note() const;
};

}  // namespace autotp
