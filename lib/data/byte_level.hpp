#pragma once
// GPT-2's byte-to-unicode alphabet: byte-level BPE vocabularies spell every byte as one
// printable character (printable Latin-1 bytes as themselves, the other 68 bytes as U+0100 +
// n in byte order: space is 'Ġ' U+0120, newline 'Ċ' U+010A).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace autotp {

// The code point that spells byte b.
uint32_t byte_to_char(uint8_t b);
// The byte a code point spells, if it is in the alphabet.
std::optional<uint8_t> char_to_byte(uint32_t cp);

// Raw bytes -> the UTF-8 of their byte-level spelling (how vocab.json writes tokens).
std::string bytes_to_token(std::string_view bytes);
// A token as written in a vocabulary -> the bytes it stands for. Like Hugging Face's ByteLevel
// decoder, a token holding any character outside the alphabet stands for its own UTF-8 bytes.
std::string token_to_bytes(std::string_view token);

}  // namespace autotp
