// Built-in model shapes, for planning without a checkpoint and for the embedded default run.
#include "config/model_config.hpp"
#include "core/error.hpp"

namespace autotp {

namespace {

// Phi-4-mini-instruct and Phi-4-multimodal-instruct (config.json, rope_scaling.long_factor).
const std::vector<double> kPhi4MiniLongFactor = {
    1,           1.118320672, 1.250641126, 1.398617824, 1.564103225, 1.74916897,  1.956131817,
    2.187582649, 2.446418898, 2.735880826, 3.059592084, 3.421605075, 3.826451687, 4.279200023,
    4.785517845, 5.351743533, 5.984965424, 6.693110555, 7.485043894, 8.370679318, 9.36110372,
    10.4687158,  11.70738129, 13.09260651, 14.64173252, 16.37415215, 18.31155283, 20.47818807,
    22.90118105, 25.61086418, 28.64115884, 32.03,       32.1,        32.13,       32.23,
    32.6,        32.61,       32.64,       32.66,       32.7,        32.71,       32.93,
    32.97,       33.28,       33.49,       33.5,        44.16,       47.77};

ModelConfig mini_like(const std::string& type) {
  ModelConfig c;
  c.model_type = type;
  c.vocab_size = 200064;
  c.hidden_size = 3072;
  c.intermediate_size = 8192;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 24;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 131072;
  c.original_max_position_embeddings = 4096;
  c.rope_theta = 10000.0;
  c.partial_rotary_factor = 0.75;
  c.rope_type = "longrope";
  c.short_factor.assign(48, 1.0);
  c.long_factor = kPhi4MiniLongFactor;
  c.tie_word_embeddings = true;
  c.bos_token_id = c.eos_token_id = c.pad_token_id = 199999;
  return c;
}

}  // namespace

std::vector<std::string> ModelConfig::preset_names() {
  return {"tiny", "phi-4", "phi-4-mini", "phi-4-multimodal"};
}

ModelConfig ModelConfig::preset(const std::string& name) {
  ModelConfig c;
  if (name == "phi-4") {
    c.vocab_size = 100352;
    c.hidden_size = 5120;
    c.intermediate_size = 17920;
    c.num_hidden_layers = 40;
    c.num_attention_heads = 40;
    c.num_key_value_heads = 10;
    c.head_dim = 128;
    c.max_position_embeddings = c.original_max_position_embeddings = 16384;
    c.rope_theta = 250000.0;
    c.tie_word_embeddings = false;
    c.bos_token_id = c.eos_token_id = c.pad_token_id = 100257;
  } else if (name == "phi-4-mini") {
    c = mini_like("phi3");
  } else if (name == "phi-4-multimodal") {
    c = mini_like("phi4mm");
  } else if (name == "tiny") {
    // The embedded default: Phi-4-shaped (GQA, partial rotary, tied embedding) and small enough
    // that its loss falls within a minute on two CPU cores. vocab = the shipped tokenizer's.
    c.vocab_size = 2048;
    c.hidden_size = 128;
    c.intermediate_size = 384;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
    c.head_dim = 16;
    c.max_position_embeddings = c.original_max_position_embeddings = 1024;
    c.rope_theta = 10000.0;
    c.partial_rotary_factor = 0.75;
    c.tie_word_embeddings = true;
    c.bos_token_id = c.eos_token_id = c.pad_token_id = 0;
  } else {
    std::string names;
    for (auto& n : preset_names()) names += " " + n;
    fail("unknown model preset '", name, "': choose one of", names,
         ", or give a config.json or an HDF5 model file");
  }
  return c;
}

}  // namespace autotp
