#pragma once
// FNV-1a, 64 bit: the checksum of token files, the fingerprint of tokenizers and of the Hugging
// Face folders converted for a run. Not cryptographic; it catches corruption and mismatched
// files, which is all it is asked to do.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace autotp {

constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325ull;

inline uint64_t fnv1a(const void* data, size_t n, uint64_t h = kFnv1aOffset) {
  auto p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
inline uint64_t fnv1a(std::string_view s, uint64_t h = kFnv1aOffset) {
  return fnv1a(s.data(), s.size(), h);
}

}  // namespace autotp
