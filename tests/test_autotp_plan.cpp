// autotp-plan, run as a user would: it rejects the seed's config with the shape to write, and
// its per-rank memory for Phi-4-mini equals the total worked out here from the model's sizes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <regex>

#include "config/model_config.hpp"
#include "io/model_file.hpp"

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

TEST(AutotpPlan, Phi4MiniPerRankMemory) {
  ToolRun r =
      run_plan("--deepspeed_config " + kConfigs + "phi-4-mini.json --model_name phi-4-mini");
  ASSERT_EQ(r.status, 0) << r.output;

  // configs/phi-4-mini.json: tp 4, dp 2, ZeRO-2, bf16, vocab_parallel; Phi-4-mini ties lm_head.
  const ModelConfig m = ModelConfig::preset("phi-4-mini");
  const int64_t tp = 4, dp = 2, H = m.hidden_size, I = m.intermediate_size;
  const int64_t q = m.num_attention_heads * m.head_dim, kv = m.num_key_value_heads * m.head_dim;
  const int64_t per_layer = 2 * H                           // the two norms, replicated
                            + (q + 2 * kv) * H / tp         // qkv_proj rows
                            + H * q / tp                    // o_proj input columns
                            + 2 * I * H / tp                // gate_up_proj rows
                            + H * I / tp;                   // down_proj input columns
  const int64_t n = m.vocab_size * H / tp                   // embed_tokens, vocabulary rows
                    + m.num_hidden_layers * per_layer + H;  // + the final norm
  const int64_t s = (n + dp - 1) / dp;                      // ZeRO-2 shard of the flat buffer
  const int64_t expected = 2 * n                            // bf16 weights
                           + 4 * s                          // fp32 gradient shard
                           + (4 + 4 + 4) * s;               // fp32 master, Adam m and v
  EXPECT_EQ(n, 959155200);  // 3.84e9 parameters, of which 1/4 of all but the norms per rank
  EXPECT_EQ(total_bytes(r.output), expected) << r.output;

  EXPECT_NE(r.output.find("tp 4 x dp 2 = 8 ranks, ZeRO stage 2, weights bf16"), std::string::npos);
  EXPECT_NE(r.output.find("layer_specs[0] column shape [[3072,1024,1024],-1]"), std::string::npos);
  EXPECT_NE(r.output.find("rows r0 [0,768)+[3072,3328)+[4096,4352)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("model.layers.1-31.*: same as layer 0"), std::string::npos);
  EXPECT_NE(r.output.find("unmatched (2-D weights no spec matched; replicated on every TP rank): "
                          "none"),
            std::string::npos);

  // The command line overrides the config: tp 8 x dp 1 with fp32 weights (no master copy).
  ToolRun o = run_plan("--deepspeed_config " + kConfigs +
                       "phi-4-mini.json --model phi-4-mini "
                       "--tp_size 8 --dp_size 1 --dtype fp32");
  ASSERT_EQ(o.status, 0) << o.output;
  const int64_t n8 = m.vocab_size * H / 8 +
                     m.num_hidden_layers * (2 * H + ((q + 2 * kv) * H + H * q + 3 * I * H) / 8) + H;
  EXPECT_EQ(total_bytes(o.output), 4 * n8 + 4 * n8 + 8 * n8) << o.output;
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
