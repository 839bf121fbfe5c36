#pragma once
// Checks the reference does not make: a Phi-3 weight's split must fall on the boundaries that
// the forward pass assumes. qkv_proj's rows are [Q | K | V] with Q = heads * head_dim and
// K = V = kv_heads * head_dim (GQA: K and V are smaller than Q), and TP rank r must hold
// [Q_r | K_r | V_r], whole heads only; gate_up_proj's rows are [gate | up] of intermediate_size
// each; o_proj's and down_proj's input columns follow the same heads and intermediate units.
#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "partition/partition_config.hpp"
#include "partition/split_layout.hpp"

namespace autotp {

// The qkv_proj shape to write for this model: [[5120, 1280, 1280], -1] for Phi-4.
std::string qkv_shape_text(const ModelConfig& mc);

// resolve_split, then the boundary checks for qkv_proj, gate_up_proj, o_proj and down_proj.
// A failing qkv_proj or gate_up_proj spec's message ends with the exact shape to write
// (build_plan then adds the tp values that plan with it).
SplitLayout resolve_checked(const LayerSpec& spec, const ParamDesc& p, const ModelConfig& mc,
                            int64_t tp, const std::string& where);

}  // namespace autotp
