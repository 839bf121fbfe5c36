#pragma once
// Byte-level BPE tokenizer that encodes exactly as Hugging Face `tokenizers` does (Phi-4's
// cl100k-style tokenizer.json, o200k-style ones, GPT-2's vocab.json + merges.txt, and the
// tokenizer our trainer writes).
//
// encode(text):
//   1. added tokens are cut out first (leftmost-longest; lstrip/rstrip absorb whitespace),
//      those with normalized=false before those with normalized=true, as HF does;
//   2. the rest is pre-tokenized (pretokenizer.hpp) into words;
//   3. each word, as bytes, goes through BPE: with ignore_merges a word found whole in the
//      vocabulary is one token; otherwise every byte starts as its own symbol and the adjacent
//      pair of lowest merge rank is merged (leftmost first on ties) until none is left.
// No special tokens are added around the text (there is no post-processor step).
// decode(ids): the bytes each token stands for, concatenated; the bytes are returned as they
// are (HF would replace invalid UTF-8 with U+FFFD; we keep the exact bytes).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/pretokenizer.hpp"

namespace autotp {

struct AddedToken {
  std::string content;
  uint32_t id = 0;
  bool special = false;
  bool lstrip = false, rstrip = false;
  bool normalized = false;   // without a normalizer this only orders the matching passes
  bool single_word = false;  // not supported: loading one is an Error
};

// Everything of a tokenizer.json that encoding uses; what the trainer produces.
struct TokenizerSpec {
  // model.vocab: token as written (GPT-2 byte alphabet) -> id.
  std::vector<std::pair<std::string, uint32_t>> vocab;
  // model.merges in rank order, tokens as written.
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<AddedToken> added_tokens;
  PreTokenizerSpec pre_tokenizer;
  bool ignore_merges = false;
  std::string unk_token;  // empty: none (bytes missing from the vocabulary are dropped, as HF)
  bool fuse_unk = false;
};

class Tokenizer {
 public:
  explicit Tokenizer(TokenizerSpec spec, std::string source = "<memory>");
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // A Hugging Face tokenizer.json (model BPE).
  static Tokenizer from_file(const std::string& tokenizer_json);
  // GPT-2 files: vocab.json + merges.txt, the GPT-2 regex, and extra added tokens.
  static Tokenizer from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt,
                                     std::vector<AddedToken> added = {},
                                     bool add_prefix_space = false);
  // A tokenizer.json, or a directory holding tokenizer.json or vocab.json + merges.txt (with
  // added_tokens.json, {content: id}, read as special tokens when present).
  static Tokenizer load(const std::string& path);

  std::vector<uint32_t> encode(std::string_view text) const;
  void encode(std::string_view text, std::vector<uint32_t>& out) const;  // appends
  std::string decode(const std::vector<uint32_t>& ids, bool skip_special = false) const;

  // Ids are < vocab_size(): one past the largest id of the vocabulary and the added tokens
  // (what the embedding matrix must hold).
  int64_t vocab_size() const;
  std::optional<uint32_t> token_to_id(std::string_view token) const;  // added tokens first
  const std::string& id_to_token(uint32_t id) const;                  // as written
  const std::string& token_bytes(uint32_t id) const;                  // what it decodes to
  bool is_special(uint32_t id) const;
  // The id of an added token, or an Error naming the tokenizer and the token.
  uint32_t added_token_id(std::string_view content) const;

  // FNV-1a of the vocabulary, merges, added tokens and pre-tokenizer: equal for two files
  // that encode alike, whatever their formatting. Token files record it.
  uint64_t fingerprint() const;
  const TokenizerSpec& spec() const;
  const std::string& source() const;

  // Hugging Face tokenizer.json text (Tokenizer.from_file loads it); save() writes it to a
  // temporary name and renames it into place.
  std::string to_json() const;
  void save(const std::string& path) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace autotp
