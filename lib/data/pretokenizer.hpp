#pragma once
// Pre-tokenization: the regex split that cuts text into words before BPE (Hugging Face's
// pre_tokenizer: Sequence[Split(Regex, Isolated|Removed), ByteLevel] or a lone ByteLevel).
//
// The GPT-2, cl100k and o200k patterns use Unicode properties that Boost.Regex without ICU
// lacks, so each has a hand-written matcher over decoded code points that follows the regex's
// backtracking semantics alternative by alternative (pretokenizer.cpp). A pattern is recognised
// by its exact string; any other pattern runs on Boost.Regex if it has no \p, else is an Error.
// Invalid UTF-8 bytes split as U+FFFD would (a symbol) and keep their byte (unicode.hpp).
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace autotp {

// The split patterns we match by hand, exactly as tokenizer.json files spell them.
extern const char* const kGpt2Pattern;    // GPT-2's ByteLevel regex
extern const char* const kCl100kPattern;  // cl100k_base / Phi-4 / Llama-3, as HF converts it
extern const char* const kCl100kTiktokenPattern;  // tiktoken's later possessive cl100k form
extern const char* const kO200kPattern;           // o200k_base / Phi-4-mini

struct SplitStep {
  std::string pattern;          // regex (or literal text, when literal)
  bool literal = false;         // Split pattern {"String": ...}
  bool remove_matches = false;  // behavior Removed (else Isolated)
};

struct PreTokenizerSpec {
  std::vector<SplitStep> splits;  // applied in order, each to the pieces of the one before
  bool byte_level_regex = false;  // ByteLevel(use_regex=true): the GPT-2 split after them
  bool add_prefix_space = false;  // ByteLevel(add_prefix_space=true)
};

class Splitter;

class PreTokenizer {
 public:
  explicit PreTokenizer(const PreTokenizerSpec& spec);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Calls fn on each non-empty piece of text, in order. A piece may point into a temporary
  // (the prefix space), so fn must not keep it.
  void for_each_piece(std::string_view text, const std::function<void(std::string_view)>& fn) const;
  std::vector<std::string> pieces(std::string_view text) const;
  const PreTokenizerSpec& spec() const { return spec_; }

 private:
  void run(size_t step, std::string_view text,
           const std::function<void(std::string_view)>& fn) const;
  PreTokenizerSpec spec_;
  std::vector<std::unique_ptr<Splitter>> steps_;  // splits, then GPT-2's when byte_level_regex
};

}  // namespace autotp
