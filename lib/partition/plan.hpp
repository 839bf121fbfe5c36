#pragma once
// The sharding plan: for each parameter of a model, how its TP ranks divide it.
//
// A parameter is split along one dim (split_dim) into sub-parameters `parts` (a fused weight
// such as qkv_proj has parts [Q, K, V]; an unfused one has a single part). Each part is cut into
// tp equal pieces and rank r holds piece r of every part, concatenated in part order:
// rank r of qkv holds [Q_r | K_r | V_r]. split_dim = -1 means replicated.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config/model_config.hpp"
#include "partition/partition_config.hpp"

namespace autotp {

struct ShardSpec {
  std::string name;
  std::vector<int64_t> shape;  // global shape
  int split_dim = -1;          // -1 = replicated on every TP rank
  std::vector<int64_t> parts;  // sub-parameter sizes along split_dim; sum = shape[split_dim]
  int64_t tp = 1;
  PartitionType type = PartitionType::Skip;
  // The spec that decided it: "layer_specs[0] column shape [[5120,1280,1280],-1]",
  // "preset phi3 [2] row", "vocab_parallel", "unmatched -> replicated", "1-D -> replicated".
  std::string rule;

  bool replicated() const { return split_dim < 0 || tp == 1; }
  // Rank r's [begin, end) ranges along split_dim, one per part, in order: part k at offset o_k
  // of size p_k gives [o_k + r*p_k/tp, o_k + (r+1)*p_k/tp). When split_dim < 0, one range that
  // covers dim 0 whole.
  std::vector<std::pair<int64_t, int64_t>> ranges(int64_t r) const;
  std::vector<int64_t> local_shape() const;  // the same on every rank
  int64_t local_numel() const;
  int64_t global_numel() const;
};

struct PartitionPlan {
  int64_t tp = 1;
  std::vector<ShardSpec> params;       // in ModelConfig::parameters() order
  std::vector<std::string> unmatched;  // 2-D weights no spec matched (replicated)
  std::vector<std::string> notes;      // warnings, e.g. a name matched by several specs

  const ShardSpec& at(const std::string& name) const;  // throws Error if absent
  const ShardSpec* find(const std::string& name) const;
};

// Applies the specs to every parameter of the model. Throws Error, naming the spec and the
// parameter, on every error case of the reference and on fused QKV splits that do not fall on
// the Q/K/V and head boundaries (the message gives the exact shape to write instead). A refusal
// that another tp or that shape cures ends with the tp values that then plan.
PartitionPlan build_plan(const PartitionConfig& pc, const ModelConfig& mc, int64_t tp);

// The tp values from 1 to num_attention_heads at which build_plan accepts pc for this model.
std::vector<int64_t> plannable_tp_sizes(const PartitionConfig& pc, const ModelConfig& mc);

// Copy rank r's shard out of / back into a full row-major tensor (elem_size bytes each).
void extract_shard(const ShardSpec& s, int64_t r, const void* full, void* local, size_t elem_size);
void insert_shard(const ShardSpec& s, int64_t r, const void* local, void* full, size_t elem_size);

// "model.layers.7.mlp.down_proj.weight" -> "model.layers.N.mlp.down_proj.weight"; other names
// are returned unchanged.
std::string layer_key(const std::string& name);
// Names that differ only in the layer index merged into one, in first-seen order:
// model.layers.{0-39}.self_attn.o_proj.weight, model.layers.{1,3,5-7}.mlp.down_proj.weight.
std::vector<std::string> group_layer_names(const std::vector<std::string>& names);

}  // namespace autotp
