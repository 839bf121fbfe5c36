#pragma once
// Cutting added (special) tokens out of text before pre-tokenization, as Hugging Face's
// AddedVocabulary::find_matches does: leftmost-longest matches (Aho-Corasick LeftmostLongest),
// lstrip/rstrip widening a match over the White_Space next to it.
#include <array>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "data/tokenizer.hpp"

namespace autotp {

class AddedTokenSplitter {
 public:
  explicit AddedTokenSplitter(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }
  // Calls on_text(piece) for text between matches and on_token(id) for each match, in order.
  void split(std::string_view text, const std::function<void(std::string_view)>& on_text,
             const std::function<void(uint32_t)>& on_token) const;

 private:
  std::vector<AddedToken> tokens_;
  std::array<std::vector<uint32_t>, 256> by_first_byte_;  // indices into tokens_, longest first
};

}  // namespace autotp
