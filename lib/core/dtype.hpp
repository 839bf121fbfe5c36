#pragma once
// Storage dtypes of checkpoint tensors. Compute on the CPU is fp32; bf16/f16 are storage and
// GPU formats, converted here with round-to-nearest-even (what torch's .to(bfloat16) does).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace autotp {

enum class DType { F32, F16, BF16 };

size_t dtype_size(DType t);
std::string dtype_name(DType t);              // "F32", "F16", "BF16" (safetensors spelling)
DType dtype_from_name(const std::string& s);  // throws Error naming s and the accepted names

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements between dtypes (same dtype = memcpy).
void convert(const void* src, DType src_t, void* dst, DType dst_t, size_t n);

}  // namespace autotp
