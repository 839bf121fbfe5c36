#pragma once
// The Phi3ForCausalLM configuration (Phi-4, Phi-4-mini, the text model of Phi-4-multimodal),
// read from a Hugging Face config.json in either of its two forms (rope_scaling with top-level
// rope keys, or transformers 5's rope_parameters).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace autotp {

struct ParamDesc {
  std::string name;            // Hugging Face name, e.g. model.layers.0.self_attn.qkv_proj.weight
  std::vector<int64_t> shape;  // [out, in] for linears, [V, H] for embeddings, [H] for norms
  int64_t numel() const;
};

struct ModelConfig {
  std::string model_type = "phi3";
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
  int64_t max_position_embeddings = 0, original_max_position_embeddings = 0;
  double rope_theta = 10000.0, partial_rotary_factor = 1.0, rms_norm_eps = 1e-5;
  std::string rope_type = "default";  // "default" or "longrope"
  std::vector<double> short_factor, long_factor;
  double rope_attention_factor = 0;  // 0 = derive from the position ratio (transformers' rule)
  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;  // -1 = none
  std::string torch_dtype = "bfloat16";
  nlohmann::json raw;  // config.json as read; written back unchanged by the converter

  // Parses and validates; `source` (a file name) prefixes every error message.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
  static ModelConfig from_file(const std::string& path);
  // Built-in shapes: "tiny" (the embedded default), "phi-4", "phi-4-mini", "phi-4-multimodal".
  static ModelConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  // A transformers-5 style config.json (raw, if the config was read from one).
  nlohmann::json to_json() const;

  int64_t q_rows() const { return num_attention_heads * head_dim; }
  int64_t kv_rows() const { return num_key_value_heads * head_dim; }
  int64_t rotary_dim() const;
  // LongRoPE's scale on cos and sin: sqrt(1 + ln(f)/ln(orig)) with f = max/orig (1 if f <= 1).
  double rope_scaling_factor() const;
  // Every parameter in Hugging Face order; lm_head.weight only when untied.
  std::vector<ParamDesc> parameters() const;
  int64_t num_parameters() const;
};

}  // namespace autotp
