// DeepSpeed's built-in AutoTP presets (AutoTPPresets in deepspeed/module_inject/autotp_config.py),
// pattern for pattern and in the same order, so "preset_model" means here what it means there.
// Note the phi3 preset's qkv shape [3,-1]: it is only right when Q, K and V have equal sizes,
// which no Phi-4 model has; build_plan rejects it for GQA models and prints the right shape.
#include "core/error.hpp"
#include "partition/partition_config.hpp"
#include "partition/regex_match.hpp"

namespace autotp {

namespace {

struct PresetSpec {
  std::vector<std::string> patterns;
  PartitionType type;
  std::vector<ShapeEntry> shape = {};
  std::optional<int> dim = std::nullopt;
};

const ShapeEntry kInfer{-1, {}};
ShapeEntry count(int64_t n) {
  return ShapeEntry{n, {}};
}

std::vector<PresetSpec> preset_table(const std::string& name) {
  using P = PartitionType;
  const PresetSpec o_proj_row{{R"(.*\.self_attn\.o_proj\.weight$)"}, P::Row};
  const PresetSpec qkv_column{{R"(.*\.self_attn\.[qkv]_proj\.weight$)"}, P::Column};
  const PresetSpec down_row{{R"(.*\.mlp\.down_proj\.weight$)"}, P::Row};
  const PresetSpec up_gate_column{{R"(.*\.mlp\.(up|gate)_proj\.weight$)"}, P::Column};
  if (name == "llama" || name == "qwen2") return {o_proj_row, qkv_column, down_row, up_gate_column};
  if (name == "phi3")
    return {o_proj_row,
            {{R"(.*\.self_attn\.qkv_proj\.weight$)"}, P::Column, {count(3), kInfer}, 0},
            down_row,
            {{R"(.*\.mlp\.gate_up_proj\.weight$)"}, P::Column, {count(2), kInfer}, 0}};
  if (name == "mixtral")
    return {o_proj_row,
            qkv_column,
            {{R"(.*\.block_sparse_moe\.experts\.\d+\.w2\.weight$)"}, P::Row},
            {{R"(.*\.block_sparse_moe\.experts\.\d+\.w[13]\.weight$)"}, P::Column},
            {{R"(.*\.block_sparse_moe\.gate\.weight$)"}, P::Skip}};
  if (name == "bloom")
    return {{{R"(.*\.self_attention\.dense\.weight$)"}, P::Row},
            {{R"(.*\.self_attention\.query_key_value\.weight$)"}, P::Column},
            {{R"(.*\.mlp\.dense_4h_to_h\.weight$)"}, P::Row},
            {{R"(.*\.mlp\.dense_h_to_4h\.weight$)"}, P::Column}};
  if (name == "chatglm")
    return {{{R"(.*\.self_attention\.dense\.weight$)"}, P::Row},
            {{R"(.*\.self_attention\.query_key_value\.weight$)"}, P::Column, {count(3), kInfer}, 0},
            {{R"(.*\.mlp\.dense_4h_to_h\.weight$)"}, P::Row},
            {{R"(.*\.mlp\.dense_h_to_4h\.weight$)"}, P::Column, {count(2), kInfer}, 0}};
  if (name == "deepseek_v2")
    return {o_proj_row,
            {{R"(.*\.self_attn\.(q_a_proj|kv_a_proj_with_mqa)\.weight$)"}, P::Skip},
            {{R"(.*\.self_attn\.(q_b_proj|kv_b_proj)\.weight$)"}, P::Column},
            {{R"(.*\.mlp\.experts\.\d+\.down_proj\.weight$)"}, P::Row},
            {{R"(.*\.mlp\.experts\.\d+\.(up|gate)_proj\.weight$)"}, P::Column},
            {{R"(.*\.mlp\.gate\.weight$)"}, P::Skip},
            {{R"(.*\.mlp\.shared_experts\.down_proj\.weight$)"}, P::Row},
            {{R"(.*\.mlp\.shared_experts\.(up|gate)_proj\.weight$)"}, P::Column}};
  return {};
}

}  // namespace

std::vector<std::string> PartitionConfig::preset_names() {
  return {"llama", "bloom", "chatglm", "mixtral", "deepseek_v2", "qwen2", "phi3"};
}

std::vector<LayerSpec> PartitionConfig::preset_specs(const std::string& preset) {
  auto table = preset_table(preset);
  if (table.empty()) {
    std::string names;
    for (auto& n : preset_names()) names += " " + n;
    fail("unknown AutoTP preset \"", preset, "\"; the presets are:", names);
  }
  std::vector<LayerSpec> specs;
  for (size_t i = 0; i < table.size(); ++i) {
    LayerSpec s;
    s.patterns = table[i].patterns;
    for (auto& p : s.patterns) s.regexes.push_back(compile_python_regex(p));
    s.type = table[i].type;
    s.shape = table[i].shape;
    s.partition_dim = table[i].dim;
    s.origin = "preset " + preset + " [" + std::to_string(i) + "]";
    specs.push_back(std::move(s));
  }
  return specs;
}

}  // namespace autotp
