#include <gtest/gtest.h>

#include <cmath>

#include "config/model_config.hpp"
#include "core/error.hpp"

using namespace autotp;
using nlohmann::json;

TEST(ModelConfig, HubFormWithRopeScaling) {
  json j = {{"model_type", "phi3"},
            {"vocab_size", 200064},
            {"hidden_size", 3072},
            {"intermediate_size", 8192},
            {"num_hidden_layers", 32},
            {"num_attention_heads", 24},
            {"num_key_value_heads", 8},
            {"max_position_embeddings", 131072},
            {"original_max_position_embeddings", 4096},
            {"rope_theta", 10000.0},
            {"partial_rotary_factor", 0.75},
            {"tie_word_embeddings", true},
            {"pad_token_id", 199999},
            {"rope_scaling",
             {{"type", "longrope"},
              {"short_factor", std::vector<double>(48, 1.0)},
              {"long_factor", std::vector<double>(48, 2.0)}}}};
  auto c = ModelConfig::from_json(j, "config.json");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rotary_dim(), 96);
  EXPECT_EQ(c.rope_type, "longrope");
  EXPECT_NEAR(c.rope_scaling_factor(), std::sqrt(17.0 / 12.0), 1e-12);
  auto params = c.parameters();
  EXPECT_EQ(params.size(), 1 + 32 * 6 + 1u);  // tied: no lm_head
  EXPECT_EQ(params[2].name, "model.layers.0.self_attn.qkv_proj.weight");
  EXPECT_EQ(params[2].shape, (std::vector<int64_t>{5120, 3072}));
  // The preset must agree with what the Hub config says.
  auto p = ModelConfig::preset("phi-4-mini");
  EXPECT_EQ(p.num_parameters(), c.num_parameters());
  EXPECT_EQ(p.num_parameters(), 3836021760);  // Phi-4-mini-instruct's parameter count
}

TEST(ModelConfig, Transformers5FormWithRopeParameters) {
  json j = {{"vocab_size", 100352},
            {"hidden_size", 5120},
            {"intermediate_size", 17920},
            {"num_hidden_layers", 40},
            {"num_attention_heads", 40},
            {"num_key_value_heads", 10},
            {"max_position_embeddings", 16384},
            {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 250000.0}}}};
  auto c = ModelConfig::from_json(j, "x.json");
  EXPECT_EQ(c.rope_theta, 250000.0);
  EXPECT_EQ(c.rope_scaling_factor(), 1.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.parameters().back().name, "lm_head.weight");
  EXPECT_EQ(c.num_parameters(), ModelConfig::preset("phi-4").num_parameters());
  // to_json() of a parsed config round-trips.
  auto again = ModelConfig::from_json(ModelConfig::preset("phi-4-mini").to_json(), "rt");
  EXPECT_EQ(again.long_factor, ModelConfig::preset("phi-4-mini").long_factor);
}

TEST(ModelConfig, ErrorsNameTheField) {
  json j = {{"vocab_size", 10},       {"hidden_size", 8},         {"intermediate_size", 8},
            {"num_hidden_layers", 1}, {"num_attention_heads", 3}, {"num_key_value_heads", 2}};
  try {
    ModelConfig::from_json(j, "bad.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_key_value_heads"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos);
  }
  j.erase("vocab_size");
  EXPECT_THROW(ModelConfig::from_json(j, "bad.json"), Error);
  EXPECT_THROW(ModelConfig::preset("phi-5"), Error);
}
