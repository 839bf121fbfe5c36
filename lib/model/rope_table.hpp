#pragma once
// cos/sin tables of the rotary embedding for positions 0..T-1, as Phi3RotaryEmbedding builds
// them (fp32 throughout, LongRoPE's attention factor applied to both).
#include <cstdint>
#include <vector>

#include "config/model_config.hpp"

namespace autotp {

struct RopeTable {
  int64_t T = 0, half = 0;      // half = rotary_dim / 2
  bool long_factors = false;    // LongRoPE: the long_factor set is in use
  std::vector<float> cos, sin;  // [T, half]
  static RopeTable build(const ModelConfig& c, int64_t T);
};

}  // namespace autotp
