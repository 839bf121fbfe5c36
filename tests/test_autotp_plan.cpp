// autotp-plan, run as a user would: it rejects the seed's config with the shape to write, and
// its per-rank memory for Phi-4-mini equals the total worked out here from the model's sizes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <regex>

#include "config/ds_config.hpp"
#include "config/model_config.hpp"
#include "io/model_file.hpp"
#include "partition/partition_config.hpp"
#include "train/memory_plan.hpp"

using namespace autotp;

namespace {

struct ToolRun {
  int status = -1;
  std::string output;  // stdout and stderr
};

ToolRun run_plan(const std::string& args) {
  const std::string cmd = AUTOTP_BINARY_DIR "/tools/autotp-plan " + args + " 2>&1";
  ToolRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// The exact byte count on "total per rank: 8.93 GiB (9,591,552,000 bytes)".
int64_t total_bytes(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(R"(total per rank: [^(]*\(([0-9,]+) bytes\))")))
    return -1;
  std::string digits;
  for (char c : m[1].str())
    if (c != ',') digits += c;
  return std::stoll(digits);
}

const std::string kConfigs = AUTOTP_SOURCE_DIR "/configs/";

}  // namespace

TEST(AutotpPlan, RejectsTheSeedConfigWithTheCorrectedShape) {
  ToolRun r = run_plan("--deepspeed_config " + kConfigs +
                       "seed-phi4-multimodal.json --model_name "
                       "phi-4-multimodal");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("autotp-plan: error: "), std::string::npos) << r.output;
  EXPECT_NE(
      r.output.find("layer_specs[0] on model.layers.0.self_attn.qkv_proj.weight [5120, 3072]"),
      std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("\"shape\": [[3072, 1024, 1024], -1] with \"partition_dim\": 0. With "
                          "that shape, the tp values that work for this model under this config: "
                          "1, 2, 4 or 8\n"),
            std::string::npos)
      << r.output;
}

// The number on a breakdown line ("  weights   5.36 GiB   5,754,931,200 bytes  ...").
int64_t line_bytes(const std::string& out, const std::string& what) {
  std::smatch m;
  if (!std::regex_search(out, m,
                         std::regex("  " + what + R"( +[0-9.]+ [KMGT]?i?B +([0-9,]+) bytes)")))
    return -1;
  std::string digits;
  for (char c : m[1].str())
    if (c != ',') digits += c;
  return std::stoll(digits);
}

TEST(AutotpPlan, Phi4MiniPerRankMemoryIsTheMemoryPlan) {
  ToolRun r = run_plan("--deepspeed_config " + kConfigs +
                       "phi-4-mini.json --model_name phi-4-mini --seq_length 2048 "
                       "--micro_batch_size 4 --device cpu");
  ASSERT_EQ(r.status, 0) << r.output;

  // configs/phi-4-mini.json: tp 4, dp 2, ZeRO-2, vocab_parallel; Phi-4-mini ties lm_head.
  const ModelConfig m = ModelConfig::preset("phi-4-mini");
  const int64_t tp = 4, H = m.hidden_size, I = m.intermediate_size;
  const int64_t q = m.num_attention_heads * m.head_dim, kv = m.num_key_value_heads * m.head_dim;
  const int64_t per_layer = 2 * H                               // the two norms, replicated
                            + (q + 2 * kv) * H / tp             // qkv_proj rows
                            + H * q / tp                        // o_proj input columns
                            + 2 * I * H / tp                    // gate_up_proj rows
                            + H * I / tp;                       // down_proj input columns
  const int64_t emb = m.vocab_size * H / tp;                    // embed_tokens, vocabulary rows
  const int64_t n = emb + m.num_hidden_layers * per_layer + H;  // + the final norm
  EXPECT_EQ(n, 959155200);
  // fp32 parameters (CPU: 64-byte lines; 4n is a multiple).
  EXPECT_EQ(line_bytes(r.output, "weights"), 4 * n) << r.output;
  // ZeRO-2 over dp 2 buckets the gradients: this rank's half of the sum, the tied embedding's
  // bucket and two the size of a layer, each layer at its own alignment (lo mod 64 elements in).
  auto lines = [](int64_t bytes) { return (bytes + 63) / 64 * 64; };
  int64_t ring = 0;
  for (int64_t l = 0; l < m.num_hidden_layers; ++l)
    ring = std::max(ring, per_layer + (emb + l * per_layer) % 64);
  EXPECT_EQ(line_bytes(r.output, "gradients"),
            lines(4 * emb) + 2 * lines(4 * ring) + lines(4 * ((n + 1) / 2)))
      << r.output;
  EXPECT_LT(line_bytes(r.output, "gradients"), 4 * n * 3 / 4);

  // The total is memory_plan's for the same layout, which builds the model and optimizer.
  DsConfig ds = DsConfig::from_file(kConfigs + "phi-4-mini.json");
  const PartitionPlan plan =
      build_plan(PartitionConfig::from_json(ds.tensor_parallel, ds.source), m, tp);
  for (bool ckpt : {false, true}) {
    const RankMemory want =
        plan_memory(memory_plan_args(ds, m, plan, 2, 4, 2048, ckpt, DeviceSizes::cpu()));
    EXPECT_EQ(line_bytes(r.output, "optimizer"), int64_t(want.optimizer));
    EXPECT_EQ(want.total(), want.peak);
    if (!ckpt) {
      EXPECT_EQ(total_bytes(r.output), int64_t(want.total())) << r.output;
      EXPECT_EQ(line_bytes(r.output, "weights"), int64_t(want.weights));
    }
  }
  EXPECT_NE(r.output.find("activation checkpointing off"), std::string::npos);
  EXPECT_NE(r.output.find("tp 4 x dp 2 = 8 ranks, ZeRO stage 2, device cpu"), std::string::npos);
  EXPECT_NE(r.output.find("layer_specs[0] column shape [[3072,1024,1024],-1]"), std::string::npos);
  EXPECT_NE(r.output.find("rows r0 [0,768)+[3072,3328)+[4096,4352)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("model.layers.1-31.*: same as layer 0"), std::string::npos);

  // On CUDA at ZeRO-2 over dp 2 the weights are narrow, their own bf16 copy (2 bytes each, in
  // the driver's granules), the fp32 master living in the optimizer's shard; at dp 1 they are
  // the fp32 master plus the GEMMs' bf16 copy.
  ToolRun g = run_plan("--deepspeed_config " + kConfigs +
                       "phi-4-mini.json --model_name phi-4-mini --seq_length 2048 "
                       "--micro_batch_size 4 --device cuda");
  ASSERT_EQ(g.status, 0) << g.output;
  EXPECT_EQ(line_bytes(g.output, "weights"), int64_t(DeviceSizes::cuda().narrow_buffer_bytes(n)))
      << g.output;
  EXPECT_LT(line_bytes(g.output, "weights"), 2 * n + (int64_t(2) << 20));
  ToolRun g1 = run_plan("--deepspeed_config " + kConfigs +
                        "phi-4-mini.json --model_name phi-4-mini --seq_length 2048 "
                        "--micro_batch_size 4 --device cuda --dp_size 1");
  ASSERT_EQ(g1.status, 0) << g1.output;
  EXPECT_GE(line_bytes(g1.output, "weights"), 6 * n) << g1.output;
  EXPECT_LT(line_bytes(g1.output, "weights"), 6 * n + (int64_t(4) << 20)) << g1.output;

  // --activation_checkpointing: the total with it, smaller.
  ToolRun c = run_plan("--deepspeed_config " + kConfigs +
                       "phi-4-mini.json --model_name phi-4-mini --seq_length 2048 "
                       "--micro_batch_size 4 --device cpu --activation_checkpointing");
  ASSERT_EQ(c.status, 0) << c.output;
  const RankMemory with =
      plan_memory(memory_plan_args(ds, m, plan, 2, 4, 2048, true, DeviceSizes::cpu()));
  EXPECT_EQ(total_bytes(c.output), int64_t(with.total())) << c.output;
  EXPECT_LT(total_bytes(c.output), total_bytes(r.output));

  // A device too small: one message naming what is missing.
  ToolRun f = run_plan("--deepspeed_config " + kConfigs +
                       "phi-4-mini.json --model_name phi-4-mini --seq_length 2048 "
                       "--micro_batch_size 4 --device cpu --device_memory_gib 8");
  EXPECT_EQ(f.status, 1);
  EXPECT_NE(f.output.find("autotp-plan: error: this layout needs "), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("but --device_memory_gib is 8.00 GiB: "), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("missing"), std::string::npos) << f.output;
}

TEST(AutotpPlan, ReadsConfigJsonAndModelFiles) {
  const std::string dir = testing::TempDir();
  const std::string cfg = dir + "autotp_plan_config.json";
  std::ofstream(cfg) << ModelConfig::preset("tiny").to_json().dump(2);
  ToolRun r = run_plan("--deepspeed_config " + kConfigs + "tiny.json --model_name " + cfg);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("model  " + cfg + ": model_type phi3, 4 layers"), std::string::npos)
      << r.output;

  const std::string h5 = dir + "autotp_plan_model.h5";
  {
    ModelFileWriter w(h5, ModelConfig::preset("tiny").to_json());
    std::vector<float> norm(128, 1.0f);
    w.write("model.norm.weight", DType::F32, {128}, norm.data());
    w.finish();
  }
  ToolRun h = run_plan("--deepspeed_config " + kConfigs + "tiny.json --model_name " + h5);
  ASSERT_EQ(h.status, 0) << h.output;
  EXPECT_NE(h.output.find(h5 + " (autotp model file)"), std::string::npos) << h.output;
  EXPECT_EQ(total_bytes(h.output), total_bytes(r.output));
  std::remove(cfg.c_str());
  std::remove(h5.c_str());
}

TEST(AutotpPlan, OneClearMessageOnBadInput) {
  ToolRun r = run_plan("--deepspeed_config /nonexistent/ds.json --model_name tiny");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.output,
            "autotp-plan: error: /nonexistent/ds.json: cannot open the DeepSpeed config\n");
  r = run_plan("--deepspeed_config " + kConfigs + "tiny.json --model_name phi-5");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("autotp-plan: error: unknown model preset 'phi-5'"), std::string::npos);
  r = run_plan("--deepspeed_config " + kConfigs + "phi-4.json --model_name phi-4 --tp_size 4");
  EXPECT_EQ(r.status, 1);
  // configs/phi-4.json splits the vocabulary: 5 and 10 do not divide 100352.
  EXPECT_NE(r.output.find("tp values that work for this model under this config: 1 or 2"),
            std::string::npos)
      << r.output;
}
