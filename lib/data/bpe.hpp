#pragma once
// The BPE model of a tokenizer: vocabulary, merge ranks, and the merge loop of Hugging Face's
// tokenizers/src/models/bpe/word.rs (Word::merge_all), reproduced step for step.
#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace autotp {

struct TokenizerSpec;

class BpeModel {
 public:
  // Checks the spec (every merge's parts and result are in the vocabulary) and builds the
  // tables; errors name `source`.
  BpeModel(const TokenizerSpec& spec, const std::string& source);

  // Appends the ids of one pre-tokenized word, given as raw bytes.
  void encode_word(std::string_view bytes, std::vector<uint32_t>& out) const;

  std::optional<uint32_t> token_to_id(std::string_view token) const;
  uint32_t max_id() const { return max_id_; }

 private:
  struct Merge {
    uint32_t rank, new_id;
  };
  static uint64_t key(uint32_t a, uint32_t b) { return (uint64_t(a) << 32) | b; }
  const Merge* find_merge(uint32_t a, uint32_t b) const;
  void merge_all(std::vector<uint32_t>& ids) const;

  std::unordered_map<std::string, uint32_t> vocab_;  // token as written -> id
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int64_t, 256> byte_id_{};  // the single-byte token of each byte, -1 if none
  bool ignore_merges_ = false;
  int64_t unk_id_ = -1;
  bool fuse_unk_ = false;
  uint32_t max_id_ = 0;

  // Words seen before: text repeats, so most words are looked up, not merged.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<uint32_t>> cache_;
};

}  // namespace autotp
