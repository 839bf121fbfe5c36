#include "data/unicode.hpp"

#include <algorithm>
#include <array>

namespace autotp {

namespace {

// The Basic Multilingual Plane as a flat table (64 KiB, built once); beyond it, binary search.
const std::array<uint8_t, 0x10000>& bmp_table() {
  static const std::array<uint8_t, 0x10000> table = [] {
    std::array<uint8_t, 0x10000> t{};
    for (size_t i = 0; i < kUnicodeClassRangeCount; ++i) {
      const UnicodeRange& r = kUnicodeClassRanges[i];
      for (uint32_t cp = r.first; cp <= r.last && cp < 0x10000; ++cp) t[cp] = r.cls;
    }
    return t;
  }();
  return table;
}

}  // namespace

UClass unicode_class(uint32_t cp) {
  if (cp < 0x10000) return UClass(bmp_table()[cp]);
  const UnicodeRange* end = kUnicodeClassRanges + kUnicodeClassRangeCount;
  const UnicodeRange* it = std::upper_bound(
      kUnicodeClassRanges, end, cp, [](uint32_t c, const UnicodeRange& r) { return c < r.first; });
  if (it == kUnicodeClassRanges) return UClass::Other;
  --it;
  return cp <= it->last ? UClass(it->cls) : UClass::Other;
}

bool is_white_space(uint32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

Utf8Char decode_utf8(const unsigned char* s, size_t n) {
  const Utf8Char bad{0xFFFD, 1, false};
  unsigned char b0 = s[0];
  if (b0 < 0x80) return {b0, 1, true};
  size_t len;
  uint32_t cp, min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return bad;  // a continuation byte or 0xF8..0xFF where a character should start
  }
  if (n < len) return bad;
  for (size_t i = 1; i < len; ++i) {
    if ((s[i] & 0xC0) != 0x80) return bad;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return bad;
  return {cp, uint8_t(len), true};
}

}  // namespace autotp
