#include "checkpoint/crc64.hpp"

#include <array>
#include <cerrno>
#include <cstdio>
#include <vector>

#include "core/error.hpp"
#include "io/file_util.hpp"

namespace autotp {

namespace {

// Byte-at-a-time table of the reflected polynomial.
std::array<uint64_t, 256> make_table() {
  constexpr uint64_t kPoly = 0xC96C5795D7870F42ull;
  std::array<uint64_t, 256> t{};
  for (uint64_t i = 0; i < 256; ++i) {
    uint64_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}

}  // namespace

uint64_t crc64(const void* data, size_t n, uint64_t crc) {
  static const std::array<uint64_t, 256> table = make_table();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::string file_crc64(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  check(f != nullptr, path, ": cannot open to checksum: ", errno_text(errno));
  std::vector<char> buf(size_t(1) << 20);
  uint64_t crc = 0;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) crc = crc64(buf.data(), n, crc);
  const bool bad = std::ferror(f) != 0;
  std::fclose(f);
  check(!bad, path, ": read error while checksumming");
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)crc);
  return hex;
}

}  // namespace autotp
