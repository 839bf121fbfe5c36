#pragma once
// How this rank's parameters lie in one flat buffer. The model owns the buffers (params and
// grads, the same layout); the optimizer shards the flat buffer over DP (ZeRO) and needs, per
// slot, whether the slot is replicated over TP (its gradient norm is counted on tp_rank 0 only)
// and whether weight decay applies.
#include <cstddef>
#include <string>
#include <vector>

#include "partition/plan.hpp"

namespace autotp {

struct ParamSlot {
  std::string name;
  const ShardSpec* spec = nullptr;  // owned by the model's PartitionPlan
  size_t offset = 0;                // first element in the flat buffer
  size_t numel = 0;                 // local (this TP rank's) element count
  bool tp_replicated = false;       // every TP rank holds the same values
  bool decay = true;                // AdamW weight decay applies (not to norms)
};

struct ParamLayout {
  std::vector<ParamSlot> slots;  // in ModelConfig::parameters() order
  size_t total = 0;              // sum of numel
  const ParamSlot& at(const std::string& name) const;
  // Builds slots from the plan (offsets packed in order).
  static ParamLayout from_plan(const PartitionPlan& plan);
};

}  // namespace autotp
