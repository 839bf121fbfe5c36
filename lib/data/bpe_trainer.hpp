#pragma once
// Byte-level BPE training (Sennrich et al. 2016 over bytes, as GPT-2 and HF's BpeTrainer do).
//
//   vocab = special tokens (ids 0..k-1, in the order given), then the 256 bytes (ids k..k+255,
//           in byte order), then one token per merge, in merge order;
//   words = the corpus cut at special tokens and split by the pre-tokenizer regex (cl100k by
//           default), counted;
//   repeat until the vocabulary has vocab_size tokens:
//     pick the adjacent pair (a, b) occurring most often over all words (weighted by count);
//     TIES: the pair whose bytes (a, then b) sort first in unsigned byte order wins;
//     append merge (a, b); replace every occurrence in every word, left to right.
// The result depends on nothing but the corpus and the options (no hash order, no threads).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.hpp"

namespace autotp {

struct BpeTrainerOptions {
  int64_t vocab_size = 2048;  // everything: special tokens + 256 bytes + merges
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  std::string pattern = kCl100kPattern;  // the pre-tokenizer Split regex
};

// Trains on `corpus` (UTF-8 text; invalid bytes are kept as bytes). Errors when vocab_size
// leaves no room for the bytes, or the corpus runs out of pairs to merge before reaching it.
TokenizerSpec train_bpe(std::string_view corpus, const BpeTrainerOptions& options);

}  // namespace autotp
