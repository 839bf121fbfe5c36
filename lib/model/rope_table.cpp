#include "model/rope_table.hpp"

#include <cmath>

namespace autotp {

RopeTable RopeTable::build(const ModelConfig& c, int64_t T) {
  RopeTable t;
  t.T = T;
  const int64_t dim = c.rotary_dim();
  t.half = dim / 2;
  // LongRoPE picks the factor set from the longest position in the batch: long once
  // max(position) + 1 > original_max_position_embeddings (transformers' dynamic_rope_update).
  t.long_factors = c.rope_type == "longrope" && T > c.original_max_position_embeddings;
  const float scale = float(c.rope_scaling_factor());
  // inv_freq[i] = 1 / (ext[i] * theta^(2i/dim)), each step in fp32 as torch does it.
  std::vector<float> inv(size_t(t.half));
  for (int64_t i = 0; i < t.half; ++i) {
    float expo = float(2 * i) / float(dim);
    float p = std::pow(float(c.rope_theta), expo);
    float ext = 1.0f;
    if (c.rope_type == "longrope")
      ext = float((t.long_factors ? c.long_factor : c.short_factor)[i]);
    inv[i] = 1.0f / (ext * p);
  }
  t.cos.resize(size_t(T * t.half));
  t.sin.resize(size_t(T * t.half));
  for (int64_t pos = 0; pos < T; ++pos) {
    for (int64_t i = 0; i < t.half; ++i) {
      float angle = float(pos) * inv[i];
      t.cos[pos * t.half + i] = std::cos(angle) * scale;
      t.sin[pos * t.half + i] = std::sin(angle) * scale;
    }
  }
  return t;
}

}  // namespace autotp
