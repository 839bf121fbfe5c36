#pragma once
// Counter-based initialisation: element value = f(seed, name, global flat index of the element
// in the FULL tensor). Each rank generates only its own shard, and every TP degree (and every
// plan) yields the same full model.
#include <cstdint>
#include <string>

#include "partition/plan.hpp"

namespace autotp {

// One N(0, 1) sample for (seed, tensor name, global index).
double counter_normal(uint64_t seed, const std::string& name, uint64_t index);

// Fills rank r's shard (local layout of `spec`) with std * counter_normal(seed, name, global
// index); global row zero_row of dim 0 (-1 = none) is set to 0 (an embedding's padding row).
void init_normal_shard(const ShardSpec& spec, int64_t r, uint64_t seed, double std,
                       int64_t zero_row, float* out);

}  // namespace autotp
