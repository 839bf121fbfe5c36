#include "data/byte_level.hpp"

#include <array>

#include "data/unicode.hpp"

namespace autotp {

namespace {

struct Alphabet {
  std::array<uint32_t, 256> to_char{};
  std::array<int16_t, 324> to_byte{};  // every character of the alphabet is < U+0144
  std::array<std::string, 256> utf8;
  Alphabet() {
    to_byte.fill(-1);
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      to_char[b] = printable(b) ? uint32_t(b) : next++;
      to_byte[to_char[b]] = int16_t(b);
      append_utf8(utf8[b], to_char[b]);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}

}  // namespace

uint32_t byte_to_char(uint8_t b) {
  return alphabet().to_char[b];
}

std::optional<uint8_t> char_to_byte(uint32_t cp) {
  if (cp >= alphabet().to_byte.size() || alphabet().to_byte[cp] < 0) return std::nullopt;
  return uint8_t(alphabet().to_byte[cp]);
}

std::string bytes_to_token(std::string_view bytes) {
  const Alphabet& a = alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += a.utf8[b];
  return out;
}

std::string token_to_bytes(std::string_view token) {
  std::string out;
  auto s = reinterpret_cast<const unsigned char*>(token.data());
  for (size_t i = 0; i < token.size();) {
    Utf8Char c = decode_utf8(s + i, token.size() - i);
    auto b = char_to_byte(c.cp);
    if (!c.valid || !b) return std::string(token);
    out.push_back(char(*b));
    i += c.len;
  }
  return out;
}

}  // namespace autotp
