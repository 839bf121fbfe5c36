#include "data/added_tokens.hpp"

#include <algorithm>

#include "data/unicode.hpp"

namespace autotp {

AddedTokenSplitter::AddedTokenSplitter(std::vector<AddedToken> tokens)
    : tokens_(std::move(tokens)) {
  for (uint32_t i = 0; i < tokens_.size(); ++i)
    if (!tokens_[i].content.empty()) by_first_byte_[uint8_t(tokens_[i].content[0])].push_back(i);
  for (auto& v : by_first_byte_)
    std::stable_sort(v.begin(), v.end(), [&](uint32_t a, uint32_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
}

namespace {

// Byte length of the White_Space run that ends at `end` (scanning back) or starts at `begin`.
size_t space_before(std::string_view s, size_t end, size_t floor) {
  size_t b = end;
  while (b > floor) {
    size_t k = b - 1;  // back up to the first byte of the previous character
    while (k > floor && (uint8_t(s[k]) & 0xC0) == 0x80) --k;
    Utf8Char c = decode_utf8(reinterpret_cast<const unsigned char*>(s.data()) + k, b - k);
    if (!c.valid || k + c.len != b || !is_white_space(c.cp)) break;
    b = k;
  }
  return end - b;
}

size_t space_after(std::string_view s, size_t begin) {
  size_t e = begin;
  while (e < s.size()) {
    Utf8Char c = decode_utf8(reinterpret_cast<const unsigned char*>(s.data()) + e, s.size() - e);
    if (!c.valid || !is_white_space(c.cp)) break;
    e += c.len;
  }
  return e - begin;
}

}  // namespace

void AddedTokenSplitter::split(std::string_view text,
                               const std::function<void(std::string_view)>& on_text,
                               const std::function<void(uint32_t)>& on_token) const {
  size_t done = 0;  // end of the last match (start_offset in HF)
  for (size_t p = 0; p < text.size();) {
    const AddedToken* hit = nullptr;
    for (uint32_t i : by_first_byte_[uint8_t(text[p])]) {
      const std::string& c = tokens_[i].content;
      if (text.compare(p, c.size(), c) == 0) {
        hit = &tokens_[i];
        break;
      }
    }
    if (!hit) {
      ++p;
      continue;
    }
    size_t start = p, stop = p + hit->content.size();
    if (hit->lstrip) start -= space_before(text, start, done);
    if (hit->rstrip) stop += space_after(text, stop);
    p = stop;
    if (done < start) on_text(text.substr(done, start - done));
    on_token(hit->id);
    done = stop;
  }
  if (done < text.size()) on_text(text.substr(done));
}

}  // namespace autotp
