#pragma once
// Shared by the model tests: tiny configs with every Phi-4 feature on, hand-made plans.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "core/strings.hpp"
#include "partition/plan.hpp"

namespace autotp::test {

// vocab 32, hidden 16, intermediate 24, nh query / nkv kv heads of head_dim 8 (so nh*hd !=
// hidden), partial rotary 0.5 (rotary_dim 4), LongRoPE with original max 4 < max 64 (scaling
// on; T > 4 uses the long factors), 2 layers, pad token 1.
inline ModelConfig tiny_config(bool tied, double init_std, int64_t nh = 4, int64_t nkv = 2) {
  nlohmann::json j = {{"model_type", "phi3"},
                      {"vocab_size", 32},
                      {"hidden_size", 16},
                      {"intermediate_size", 24},
                      {"num_hidden_layers", 2},
                      {"num_attention_heads", nh},
                      {"num_key_value_heads", nkv},
                      {"head_dim", 8},
                      {"max_position_embeddings", 64},
                      {"rms_norm_eps", 1e-5},
                      {"tie_word_embeddings", tied},
                      {"pad_token_id", 1},
                      {"initializer_range", init_std},
                      {"rope_parameters",
                       {{"rope_type", "longrope"},
                        {"rope_theta", 10000.0},
                        {"partial_rotary_factor", 0.5},
                        {"original_max_position_embeddings", 4},
                        {"short_factor", {1.0, 1.7}},
                        {"long_factor", {2.5, 4.0}}}}};
  return ModelConfig::from_json(j, "tiny test config");
}

// How a hand-made plan splits one parameter: split_dim (-1 = replicated) and its parts.
struct Split {
  int dim = -1;
  std::vector<int64_t> parts;
};

// A plan whose rule for each parameter comes from `rule(name, shape)`.
template <typename Rule>
PartitionPlan hand_plan(const ModelConfig& c, int64_t tp, Rule rule) {
  PartitionPlan p;
  p.tp = tp;
  for (auto& d : c.parameters()) {
    ShardSpec s;
    s.name = d.name;
    s.shape = d.shape;
    s.tp = tp;
    Split sp = d.shape.size() == 2 ? rule(d.name, d.shape) : Split{};
    s.split_dim = sp.dim;
    s.parts = sp.dim < 0 ? std::vector<int64_t>{d.shape[0]} : sp.parts;
    if (sp.dim >= 0 && s.parts.empty()) s.parts = {d.shape[size_t(sp.dim)]};
    s.type = sp.dim == 0 ? PartitionType::Column
                         : (sp.dim == 1 ? PartitionType::Row : PartitionType::Skip);
    s.rule = "test";
    p.params.push_back(s);
  }
  return p;
}

inline PartitionPlan replicated_plan(const ModelConfig& c, int64_t tp = 1) {
  return hand_plan(c, tp, [](const std::string&, const std::vector<int64_t>&) { return Split{}; });
}

using ::autotp::ends_with;

// ||a - b|| / ||b|| (the absolute norm when b is all zeros), in double.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace autotp::test
