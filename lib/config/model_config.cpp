#include "config/model_config.hpp"

#include <cmath>
#include <fstream>

#include "core/error.hpp"

namespace autotp {

using nlohmann::json;

int64_t ParamDesc::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {

template <typename T>
void get_opt(const json& j, const char* key, T& out, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return;
  try {
    out = j[key].get<T>();
  } catch (const json::exception&) {
    fail(src, ": field '", key, "' has the wrong type (", j[key].dump(), ")");
  }
}

int64_t token_id(const json& j, const char* key, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return -1;
  if (j[key].is_array()) return j[key].empty() ? -1 : j[key][0].get<int64_t>();
  int64_t v = -1;
  get_opt(j, key, v, src);
  return v;
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& src) {
  check(j.is_object(), src, ": a model config must be a JSON object");
  ModelConfig c;
  c.raw = j;
  get_opt(j, "model_type", c.model_type, src);
  for (auto [key, ptr] : {std::pair{"vocab_size", &c.vocab_size},
                          {"hidden_size", &c.hidden_size},
                          {"intermediate_size", &c.intermediate_size},
                          {"num_hidden_layers", &c.num_hidden_layers},
                          {"num_attention_heads", &c.num_attention_heads}}) {
    check(j.contains(key), src, ": missing required field '", key, "'");
    get_opt(j, key, *ptr, src);
    check(*ptr > 0, src, ": field '", key, "' must be positive, got ", *ptr);
  }
  c.num_key_value_heads = c.num_attention_heads;
  get_opt(j, "num_key_value_heads", c.num_key_value_heads, src);
  c.head_dim = c.hidden_size / c.num_attention_heads;
  get_opt(j, "head_dim", c.head_dim, src);
  get_opt(j, "max_position_embeddings", c.max_position_embeddings, src);
  if (c.max_position_embeddings <= 0) c.max_position_embeddings = 4096;
  c.original_max_position_embeddings = c.max_position_embeddings;
  get_opt(j, "original_max_position_embeddings", c.original_max_position_embeddings, src);
  get_opt(j, "rope_theta", c.rope_theta, src);
  get_opt(j, "partial_rotary_factor", c.partial_rotary_factor, src);
  get_opt(j, "rms_norm_eps", c.rms_norm_eps, src);
  get_opt(j, "tie_word_embeddings", c.tie_word_embeddings, src);
  get_opt(j, "torch_dtype", c.torch_dtype, src);
  get_opt(j, "dtype", c.torch_dtype, src);
  c.bos_token_id = token_id(j, "bos_token_id", src);
  c.eos_token_id = token_id(j, "eos_token_id", src);
  c.pad_token_id = token_id(j, "pad_token_id", src);

  // Rope: transformers 5 writes rope_parameters; Hub checkpoints write rope_scaling.
  json rope = j.contains("rope_parameters") && j["rope_parameters"].is_object()
                  ? j["rope_parameters"]
                  : (j.contains("rope_scaling") && j["rope_scaling"].is_object() ? j["rope_scaling"]
                                                                                 : json::object());
  std::string where = src + " (rope)";
  get_opt(rope, "rope_theta", c.rope_theta, where);
  get_opt(rope, "partial_rotary_factor", c.partial_rotary_factor, where);
  get_opt(rope, "original_max_position_embeddings", c.original_max_position_embeddings, where);
  std::string type = "default";
  get_opt(rope, "type", type, where);
  get_opt(rope, "rope_type", type, where);
  if (type == "su") type = "longrope";  // early Phi-3 spelling
  check(type == "default" || type == "longrope", src, ": rope type '", type,
        "' is not supported (autotp implements 'default' and 'longrope')");
  c.rope_type = type;
  get_opt(rope, "short_factor", c.short_factor, where);
  get_opt(rope, "long_factor", c.long_factor, where);
  get_opt(rope, "attention_factor", c.rope_attention_factor, where);

  check(c.num_attention_heads % c.num_key_value_heads == 0, src, ": num_attention_heads (",
        c.num_attention_heads, ") must be a multiple of num_key_value_heads (",
        c.num_key_value_heads, ")");
  check(c.head_dim > 0, src, ": head_dim must be positive");
  check(c.rotary_dim() % 2 == 0 && c.rotary_dim() > 0, src,
        ": head_dim * partial_rotary_factor must be a positive even number, got ",
        c.head_dim * c.partial_rotary_factor);
  if (c.rope_type == "longrope") {
    size_t half = size_t(c.rotary_dim() / 2);
    check(c.short_factor.size() == half && c.long_factor.size() == half, src,
          ": longrope short_factor and long_factor need rotary_dim/2 = ", half,
          " values each, got ", c.short_factor.size(), " and ", c.long_factor.size());
  }
  check(c.pad_token_id < c.vocab_size, src, ": pad_token_id ", c.pad_token_id,
        " is outside the vocabulary (", c.vocab_size, ")");
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  std::ifstream f(path);
  check(bool(f), path, ": cannot open the model config");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    fail(path, ": not valid JSON (", e.what(), ")");
  }
  return from_json(j, path);
}

int64_t ModelConfig::rotary_dim() const {
  return int64_t(double(head_dim) * partial_rotary_factor);
}

double ModelConfig::rope_scaling_factor() const {
  if (rope_type != "longrope") return 1.0;
  if (rope_attention_factor > 0) return rope_attention_factor;
  double f = double(max_position_embeddings) / double(original_max_position_embeddings);
  if (f <= 1.0) return 1.0;
  return std::sqrt(1.0 + std::log(f) / std::log(double(original_max_position_embeddings)));
}

std::vector<ParamDesc> ModelConfig::parameters() const {
  const int64_t H = hidden_size, I = intermediate_size;
  std::vector<ParamDesc> p;
  p.push_back({"model.embed_tokens.weight", {vocab_size, H}});
  for (int64_t l = 0; l < num_hidden_layers; ++l) {
    std::string pre = "model.layers." + std::to_string(l) + ".";
    p.push_back({pre + "input_layernorm.weight", {H}});
    p.push_back({pre + "self_attn.qkv_proj.weight", {q_rows() + 2 * kv_rows(), H}});
    p.push_back({pre + "self_attn.o_proj.weight", {H, q_rows()}});
    p.push_back({pre + "post_attention_layernorm.weight", {H}});
    p.push_back({pre + "mlp.gate_up_proj.weight", {2 * I, H}});
    p.push_back({pre + "mlp.down_proj.weight", {H, I}});
  }
  p.push_back({"model.norm.weight", {H}});
  if (!tie_word_embeddings) p.push_back({"lm_head.weight", {vocab_size, H}});
  return p;
}

int64_t ModelConfig::num_parameters() const {
  int64_t n = 0;
  for (auto& d : parameters()) n += d.numel();
  return n;
}

json ModelConfig::to_json() const {
  if (!raw.is_null()) return raw;
  json j = {{"architectures", {"Phi3ForCausalLM"}},
            {"model_type", model_type},
            {"vocab_size", vocab_size},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"num_hidden_layers", num_hidden_layers},
            {"num_attention_heads", num_attention_heads},
            {"num_key_value_heads", num_key_value_heads},
            {"head_dim", head_dim},
            {"max_position_embeddings", max_position_embeddings},
            {"original_max_position_embeddings", original_max_position_embeddings},
            {"rms_norm_eps", rms_norm_eps},
            {"tie_word_embeddings", tie_word_embeddings},
            {"hidden_act", "silu"},
            {"attention_dropout", 0.0},
            {"embd_pdrop", 0.0},
            {"resid_pdrop", 0.0},
            {"attention_bias", false},
            {"torch_dtype", torch_dtype}};
  json rope = {{"rope_type", rope_type},
               {"rope_theta", rope_theta},
               {"partial_rotary_factor", partial_rotary_factor}};
  if (rope_type == "longrope") {
    rope["short_factor"] = short_factor;
    rope["long_factor"] = long_factor;
    rope["original_max_position_embeddings"] = original_max_position_embeddings;
  }
  j["rope_parameters"] = rope;
  j["rope_theta"] = rope_theta;
  j["partial_rotary_factor"] = partial_rotary_factor;
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_id >= 0) j["eos_token_id"] = eos_token_id;
  if (pad_token_id >= 0) j["pad_token_id"] = pad_token_id;
  return j;
}

}  // namespace autotp
