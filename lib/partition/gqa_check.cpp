#include "partition/gqa_check.hpp"

#include "core/error.hpp"
#include "core/strings.hpp"

namespace autotp {

namespace {

std::string qkv_fix(const ModelConfig& mc) {
  return "Q, K and V of this model have " + std::to_string(mc.q_rows()) + ", " +
         std::to_string(mc.kv_rows()) + " and " + std::to_string(mc.kv_rows()) + " rows (" +
         std::to_string(mc.num_attention_heads) + " query heads, " +
         std::to_string(mc.num_key_value_heads) + " KV heads, head_dim " +
         std::to_string(mc.head_dim) + "): write \"shape\": " + qkv_shape_text(mc) +
         " with \"partition_dim\": 0";
}

const char* kGateUpFix = "write \"shape\": [2, -1] with \"partition_dim\": 0 ([gate | up])";

}  // namespace

std::string qkv_shape_text(const ModelConfig& mc) {
  return "[[" + std::to_string(mc.q_rows()) + ", " + std::to_string(mc.kv_rows()) + ", " +
         std::to_string(mc.kv_rows()) + "], -1]";
}

SplitLayout resolve_checked(const LayerSpec& spec, const ParamDesc& p, const ModelConfig& mc,
                            int64_t tp, const std::string& where) {
  const std::string& n = p.name;
  const bool qkv = ends_with(n, "self_attn.qkv_proj.weight");
  const bool gate_up = ends_with(n, "mlp.gate_up_proj.weight");
  const bool o_proj = ends_with(n, "self_attn.o_proj.weight");
  const bool down = ends_with(n, "mlp.down_proj.weight");
  const bool splits_rows = spec.type == PartitionType::Column;  // parse_spec enforces the dim

  SplitLayout l;
  try {
    l = resolve_split(spec, p.shape, where);
  } catch (const Error& e) {
    if (qkv && splits_rows) fail(e.what(), ". ", qkv_fix(mc));
    if (gate_up && splits_rows)
      fail(e.what(), ". gate and up have ", mc.intermediate_size, " rows each: ", kGateUpFix);
    throw;
  }
  const std::string cut = spec.shape.empty() ? std::string("the spec splits the rows as one block")
                                             : "shape " + shape_to_string(spec.shape) +
                                                   " splits the rows into sub-parameters " +
                                                   dims_to_string(l.parts);

  if (qkv && l.split_dim == 0) {
    const std::vector<int64_t> qkv_parts = {mc.q_rows(), mc.kv_rows(), mc.kv_rows()};
    check(l.parts == qkv_parts, where, ": ", cut,
          ", not at the Q/K/V boundaries, so a TP rank would hold the wrong heads. ", qkv_fix(mc));
    check(mc.num_key_value_heads % tp == 0, where, ": tp ", tp, " does not divide the ",
          mc.num_key_value_heads, " KV heads (", mc.num_attention_heads,
          " query heads), so a rank would hold part of a head");
  }
  if (gate_up && l.split_dim == 0) {
    const std::vector<int64_t> gu_parts = {mc.intermediate_size, mc.intermediate_size};
    check(l.parts == gu_parts, where, ": ", cut, ", but its rows are gate and up of ",
          mc.intermediate_size, " each, and a TP rank needs the same units of both: ", kGateUpFix);
  }
  if (o_proj && l.split_dim == 1) {
    check(l.parts == std::vector<int64_t>{mc.q_rows()}, where,
          ": o_proj's input columns are the attention heads in order and must be split as one "
          "block, like Q in qkv_proj; remove its shape");
    check(mc.num_attention_heads % tp == 0 && mc.num_key_value_heads % tp == 0, where, ": tp ", tp,
          " would split o_proj's input inside a head (", mc.num_attention_heads, " query heads, ",
          mc.num_key_value_heads, " KV heads)");
  }
  if (down && l.split_dim == 1)
    check(l.parts == std::vector<int64_t>{mc.intermediate_size}, where,
          ": down_proj's input columns are the intermediate units in order and must be split as "
          "one block, like gate and up in gate_up_proj; remove its shape");
  return l;
}

}  // namespace autotp
