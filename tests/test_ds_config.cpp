// ds_config.json reading: DeepSpeed's keys and defaults, "auto", comments, and one clear error
// (naming the file and the field) for each malformed value.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "config/ds_config.hpp"
#include "core/error.hpp"

using namespace autotp;
using nlohmann::json;

namespace {

std::string error_of(const json& j) {
  try {
    DsConfig::from_json(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

template <typename F>
std::string error_of_call(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string write_temp(const std::string& text) {
  std::string path = testing::TempDir() + "ds_config_test.json";
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST(DsConfig, ReadsTheTinyConfig) {
  DsConfig c = DsConfig::from_file(AUTOTP_SOURCE_DIR "/configs/tiny.json");
  EXPECT_EQ(c.autotp_size, 2);
  EXPECT_EQ(c.data_parallel_size, 2);
  EXPECT_EQ(c.zero_stage, 2);
  EXPECT_EQ(c.train_batch_size, 0);  // "auto"
  EXPECT_EQ(c.train_micro_batch_size_per_gpu, 8);
  EXPECT_EQ(c.gradient_accumulation_steps, 1);
  EXPECT_DOUBLE_EQ(c.gradient_clipping, 1.0);
  EXPECT_FALSE(c.bf16);
  EXPECT_TRUE(c.has_seed);
  EXPECT_EQ(c.seed, 1234);
  EXPECT_EQ(c.optimizer.type, "AdamW");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-3);
  EXPECT_DOUBLE_EQ(c.optimizer.beta1, 0.9);
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.95);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.01);
  EXPECT_EQ(c.scheduler.type, "WarmupCosineLR");
  EXPECT_EQ(c.scheduler.warmup_num_steps, 10);
  EXPECT_EQ(c.scheduler.total_num_steps, 100);
  EXPECT_DOUBLE_EQ(c.scheduler.cos_min_ratio, 0.1);
  EXPECT_EQ(c.scheduler.warmup_type, "linear");
  EXPECT_EQ(c.tensor_parallel["autotp_size"], 2);
  EXPECT_TRUE(c.tensor_parallel["partition_config"]["vocab_parallel"].get<bool>());
}

TEST(DsConfig, AllowsCommentsAndIgnoresUnknownTopLevelKeys) {
  std::string path = write_temp(R"({
    // DeepSpeed has many keys autotp does not act on
    "wall_clock_breakdown": false, /* ignored */
    "flops_profiler": {"enabled": true},
    "zero_optimization": {"stage": 1, "overlap_comm": true},
    "bf16": {"enabled": true}
  })");
  DsConfig c = DsConfig::from_file(path);
  EXPECT_EQ(c.zero_stage, 1);
  EXPECT_TRUE(c.bf16);
  EXPECT_FALSE(c.has_seed);
  EXPECT_EQ(c.seed, 1234);
  EXPECT_EQ(c.source, path);
  std::remove(path.c_str());
}

TEST(DsConfig, BadJsonNamesTheFile) {
  std::string path = write_temp("{\"zero_optimization\": {\"stage\": 2,}");
  try {
    DsConfig::from_file(path);
    FAIL() << "accepted broken JSON";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": not valid JSON"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
  EXPECT_THROW(DsConfig::from_file("/nonexistent/ds.json"), Error);
}

TEST(DsConfig, ZeroStage3IsRejected) {
  std::string e = error_of({{"zero_optimization", {{"stage", 3}}}});
  EXPECT_NE(e.find("cfg.json"), std::string::npos) << e;
  EXPECT_NE(e.find("zero_optimization.stage"), std::string::npos) << e;
  EXPECT_NE(e.find("autotp implements ZeRO stages 0-2"), std::string::npos) << e;
}

TEST(DsConfig, MalformedValuesNameFileAndField) {
  struct Case {
    json j;
    std::string field;
  };
  std::vector<Case> cases = {
      {{{"train_micro_batch_size_per_gpu", "eight"}}, "'train_micro_batch_size_per_gpu'"},
      {{{"train_batch_size", -4}}, "'train_batch_size'"},
      {{{"gradient_accumulation_steps", 1.5}}, "'gradient_accumulation_steps'"},
      {{{"gradient_clipping", "big"}}, "'gradient_clipping'"},
      {{{"zero_optimization", {{"stage", "two"}}}}, "'zero_optimization.stage'"},
      {{{"zero_optimization", 2}}, "'zero_optimization'"},
      {{{"bf16", {{"enabled", 1}}}}, "'bf16.enabled'"},
      {{{"data_parallel_size", 0}}, "'data_parallel_size'"},
      {{{"tensor_parallel", {{"autotp_size", "four"}}}}, "'tensor_parallel.autotp_size'"},
      {{{"optimizer", {{"type", "AdamW"}, {"params", {{"lr", "fast"}}}}}}, "'optimizer.params.lr'"},
      {{{"optimizer", {{"type", "AdamW"}, {"params", {{"betas", {0.9}}}}}}},
       "'optimizer.params.betas'"},
      {{{"optimizer", {{"type", "SGD"}}}}, "'optimizer.type'"},
      {{{"optimizer", {{"type", "Adam"}, {"params", {{"adam_w_mode", false}}}}}},
       "'optimizer.params.adam_w_mode'"},
      {{{"scheduler", {{"type", "OneCycle"}}}}, "'scheduler.type'"},
      {{{"scheduler", {{"type", "WarmupCosineLR"}, {"params", {{"warmup_num_steps", 5}}}}}},
       "'scheduler.params.total_num_steps'"},
      {{{"scheduler", {{"type", "WarmupLR"}, {"params", {{"warmup_type", "cubic"}}}}}},
       "'scheduler.params.warmup_type'"},
      {{{"fp16", {{"enabled", true}}}}, "'fp16.enabled'"},
      {{{"seed", "abc"}}, "'seed'"},
  };
  for (auto& c : cases) {
    std::string e = error_of(c.j);
    EXPECT_NE(e.find("cfg.json: field " + c.field), std::string::npos)
        << c.j.dump() << " -> " << (e.empty() ? "(accepted)" : e);
  }
}

TEST(DsConfig, AutoMeansNotGiven) {
  DsConfig c = DsConfig::from_json({{"train_batch_size", "auto"},
                                    {"train_micro_batch_size_per_gpu", "auto"},
                                    {"gradient_accumulation_steps", "auto"},
                                    {"gradient_clipping", "auto"}},
                                   "cfg.json");
  EXPECT_EQ(c.train_batch_size, 0);
  EXPECT_EQ(c.train_micro_batch_size_per_gpu, 0);
  EXPECT_EQ(c.gradient_accumulation_steps, 0);
  EXPECT_EQ(c.gradient_clipping, 0.0);
}

TEST(DsConfig, OptimizerDefaultsFollowDeepSpeed) {
  // No optimizer block: the trainer's defaults.
  DsConfig none = DsConfig::from_json(json::object(), "cfg.json");
  EXPECT_DOUBLE_EQ(none.optimizer.lr, 3e-4);
  EXPECT_DOUBLE_EQ(none.optimizer.weight_decay, 0.01);
  // A block with missing params: FusedAdam's defaults, as DeepSpeed builds it.
  DsConfig adam = DsConfig::from_json({{"optimizer", {{"type", "Adam"}}}}, "cfg.json");
  EXPECT_EQ(adam.optimizer.type, "Adam");
  EXPECT_DOUBLE_EQ(adam.optimizer.lr, 1e-3);
  EXPECT_DOUBLE_EQ(adam.optimizer.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(adam.optimizer.beta1, 0.9);
  EXPECT_DOUBLE_EQ(adam.optimizer.beta2, 0.999);
  EXPECT_DOUBLE_EQ(adam.optimizer.eps, 1e-8);
}

TEST(DsConfig, AMissingOptimizerBlockIsNamedWithTheValuesUsed) {
  DsConfig none = DsConfig::from_json(json::object(), "cfg.json");
  EXPECT_FALSE(none.has_optimizer);
  EXPECT_EQ(none.optimizer_defaults_note(),
            "cfg.json has no optimizer block, so autotp trains with AdamW with lr 0.0003, betas "
            "[0.9, 0.999], eps 1e-08, weight_decay 0.01 (add \"optimizer\": {\"type\": "
            "\"AdamW\", \"params\": {\"lr\": ...}} to choose; --lr sets the lr)");
  none.optimizer.lr = 0.02;  // as --lr sets it: the note says the value used
  EXPECT_NE(none.optimizer_defaults_note().find("AdamW with lr 0.02, "), std::string::npos);
  EXPECT_TRUE(DsConfig::from_json({{"optimizer", {{"type", "Adam"}}}}, "cfg.json").has_optimizer);
  // The seed's config has none.
  EXPECT_FALSE(
      DsConfig::from_file(AUTOTP_SOURCE_DIR "/configs/seed-phi4-multimodal.json").has_optimizer);
}

TEST(DsConfig, WarmupLrCarriesItsLearningRatesOver) {
  DsConfig c = DsConfig::from_json({{"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 1e-4}}}}},
                                    {"scheduler",
                                     {{"type", "WarmupDecayLR"},
                                      {"params",
                                       {{"warmup_min_lr", 1e-5},
                                        {"warmup_max_lr", 5e-4},
                                        {"warmup_num_steps", 20},
                                        {"total_num_steps", 200}}}}}},
                                   "cfg.json");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 5e-4);  // DeepSpeed's WarmupLR ignores the optimizer's lr
  EXPECT_DOUBLE_EQ(c.scheduler.warmup_min_ratio, 1e-5 / 5e-4);
  EXPECT_EQ(c.scheduler.warmup_type, "log");  // DeepSpeed's default
  DsConfig d = DsConfig::from_json(
      {{"optimizer", {{"params", {{"lr", 1e-4}}}}}, {"scheduler", {{"type", "WarmupLR"}}}},
      "cfg.json");
  EXPECT_DOUBLE_EQ(d.optimizer.lr, 0.001);  // warmup_max_lr's default
  DsConfig a = DsConfig::from_json(
      {{"optimizer", {{"params", {{"lr", 1e-4}}}}},
       {"scheduler", {{"type", "WarmupLR"}, {"params", {{"warmup_max_lr", "auto"}}}}}},
      "cfg.json");
  EXPECT_DOUBLE_EQ(a.optimizer.lr, 1e-4);
}

TEST(DsConfig, ResolvesTheBatchLikeDeepSpeed) {
  DsConfig c;
  c.source = "cfg.json";
  c.train_micro_batch_size_per_gpu = 8;
  c.resolve_batch(2);
  EXPECT_EQ(c.gradient_accumulation_steps, 1);
  EXPECT_EQ(c.train_batch_size, 16);

  DsConfig t;
  t.train_batch_size = 64;
  t.gradient_accumulation_steps = 4;
  t.resolve_batch(4);
  EXPECT_EQ(t.train_micro_batch_size_per_gpu, 4);

  DsConfig u;
  u.train_batch_size = 64;
  u.train_micro_batch_size_per_gpu = 2;
  u.resolve_batch(4);
  EXPECT_EQ(u.gradient_accumulation_steps, 8);

  DsConfig bad;
  bad.source = "cfg.json";
  bad.train_batch_size = 30;
  bad.train_micro_batch_size_per_gpu = 4;
  bad.gradient_accumulation_steps = 2;
  try {
    bad.resolve_batch(4);
    FAIL() << "accepted 30 != 4 x 2 x 4";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train_batch_size 30 != train_micro_batch_size_per_gpu 4"),
              std::string::npos)
        << e.what();
  }
  DsConfig neither;
  EXPECT_THROW(neither.resolve_batch(1), Error);
}

TEST(DsConfig, ActivationCheckpointingBlockTurnsItOn) {
  DsConfig none = DsConfig::from_json(json::object(), "cfg.json");
  EXPECT_FALSE(none.activation_checkpointing.enabled);
  EXPECT_FALSE(none.activation_checkpointing.on(-1));
  EXPECT_TRUE(none.activation_checkpointing.on(1));  // --activation_checkpointing true

  // DeepSpeed's keys, each with a value autotp honours.
  DsConfig c = DsConfig::from_json(json::parse(R"({"activation_checkpointing": {
      "partition_activations": false, "cpu_checkpointing": false,
      "contiguous_memory_optimization": true, "number_checkpoints": 40,
      "synchronize_checkpoint_boundary": true, "profile": false}})"),
                                   "cfg.json");
  const ActivationCheckpointingConfig& a = c.activation_checkpointing;
  EXPECT_TRUE(a.enabled);
  EXPECT_TRUE(a.on(-1));
  EXPECT_FALSE(a.on(0));  // --activation_checkpointing false
  EXPECT_TRUE(a.synchronize_checkpoint_boundary);
  EXPECT_EQ(a.number_checkpoints, 40);
  a.check_layers(40, "cfg.json");  // one checkpoint per layer: honoured

  DsConfig empty = DsConfig::from_json(json::parse(R"({"activation_checkpointing": {}})"), "c");
  EXPECT_TRUE(empty.activation_checkpointing.enabled);
  EXPECT_EQ(empty.activation_checkpointing.number_checkpoints, 0);
  empty.activation_checkpointing.check_layers(32, "c");  // null: every layer
  DsConfig null_n = DsConfig::from_json(
      json::parse(R"({"activation_checkpointing": {"number_checkpoints": null}})"), "c");
  EXPECT_EQ(null_n.activation_checkpointing.number_checkpoints, 0);
}

TEST(DsConfig, ActivationCheckpointingKeysThatCannotBeHonouredAreNamed) {
  auto err = [](const char* block) {
    return error_of(json::parse(std::string(R"({"activation_checkpointing": )") + block + "}"));
  };
  EXPECT_EQ(err(R"({"partition_activations": true})"),
            "cfg.json: field 'activation_checkpointing.partition_activations' is true, which "
            "autotp cannot honour: autotp's checkpoints (each layer's input) stay whole on every "
            "TP rank; set it to false or remove it");
  EXPECT_EQ(err(R"({"cpu_checkpointing": true})"),
            "cfg.json: field 'activation_checkpointing.cpu_checkpointing' is true, which autotp "
            "cannot honour: autotp keeps the checkpoints in device memory; set it to false or "
            "remove it");
  EXPECT_NE(err(R"({"profile": true})").find("'activation_checkpointing.profile' is true"),
            std::string::npos);
  EXPECT_EQ(err(R"({"partition_activation": false})"),
            "cfg.json: field 'activation_checkpointing.partition_activation' is not one of "
            "DeepSpeed's activation_checkpointing keys (partition_activations, "
            "cpu_checkpointing, contiguous_memory_optimization, number_checkpoints, "
            "synchronize_checkpoint_boundary, profile)");
  EXPECT_EQ(err(R"({"number_checkpoints": 0})"),
            "cfg.json: field 'activation_checkpointing.number_checkpoints' must be a positive "
            "integer or \"auto\", got 0");
  EXPECT_EQ(err(R"({"synchronize_checkpoint_boundary": "yes"})"),
            "cfg.json: field 'activation_checkpointing.synchronize_checkpoint_boundary' must be "
            "true or false, got \"yes\"");
  EXPECT_EQ(err("true"), "cfg.json: field 'activation_checkpointing' must be an object, got true");

  // number_checkpoints other than one per layer: refused once the model is known.
  DsConfig c = DsConfig::from_json(
      json::parse(R"({"activation_checkpointing": {"number_checkpoints": 4}})"), "cfg.json");
  EXPECT_EQ(error_of_call([&] { c.activation_checkpointing.check_layers(32, "cfg.json"); }),
            "cfg.json: field 'activation_checkpointing.number_checkpoints' is 4, but autotp "
            "checkpoints every layer's input (full layer recompute): the model has 32 layers, so "
            "write 32 or null");
}
