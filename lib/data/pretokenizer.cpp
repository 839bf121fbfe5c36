#include "data/pretokenizer.hpp"

#include <boost/regex.hpp>

#include "core/error.hpp"
#include "data/unicode.hpp"

namespace autotp {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kCl100kPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kCl100kTiktokenPattern =
    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s)";
const char* const kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Calls emit(begin, end, is_match) for consecutive byte ranges that cover the text.
using EmitFn = std::function<void(size_t, size_t, bool)>;

class Splitter {
 public:
  virtual ~Splitter() = default;
  virtual void split(std::string_view text, const EmitFn& emit) const = 0;
};

namespace {

// ---- hand-written matchers over code points ------------------------------------------------

struct Char {
  uint32_t cp;
  UClass cls;
  bool space;
};

enum class Pattern { Gpt2, Cl100k, Cl100kTiktoken, O200k };

// One piece of text, decoded. Index n (one past the end) reads as a NUL that is in no class,
// so the matchers need no bounds checks beyond `i < n` in their loops.
struct Decoded {
  std::vector<Char> c;
  std::vector<size_t> off;  // byte offset of each character, plus the end
  size_t n = 0;

  explicit Decoded(std::string_view text) {
    auto s = reinterpret_cast<const unsigned char*>(text.data());
    for (size_t i = 0; i < text.size();) {
      Utf8Char u = decode_utf8(s + i, text.size() - i);
      c.push_back({u.cp, unicode_class(u.cp), is_white_space(u.cp)});
      off.push_back(i);
      i += u.len;
    }
    n = c.size();
    c.push_back({0, UClass::Other, false});
    off.push_back(text.size());
  }
  uint32_t cp(size_t i) const { return c[i].cp; }
  bool L(size_t i) const { return is_letter(c[i].cls); }
  bool N(size_t i) const { return c[i].cls == UClass::Number; }
  bool S(size_t i) const { return c[i].space; }
  bool crlf(size_t i) const { return c[i].cp == '\r' || c[i].cp == '\n'; }
  // [^\r\n\p{L}\p{N}]: the optional lead of a word (a space, a symbol, a mark ...).
  bool lead(size_t i) const { return i < n && !crlf(i) && !L(i) && !N(i); }
  // [^\s\p{L}\p{N}]: punctuation and symbols (marks too).
  bool punct(size_t i) const { return i < n && !S(i) && !L(i) && !N(i); }
  // o200k's [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and [\p{Ll}\p{Lm}\p{Lo}\p{M}].
  bool upper(size_t i) const {
    UClass k = c[i].cls;
    return k == UClass::Lu || k == UClass::Lt || k == UClass::Lm || k == UClass::Lo ||
           k == UClass::Mark;
  }
  bool lower(size_t i) const {
    UClass k = c[i].cls;
    return k == UClass::Ll || k == UClass::Lm || k == UClass::Lo || k == UClass::Mark;
  }
  template <typename Pred>
  size_t run(size_t i, Pred p) const {  // end of the run of p starting at i
    while (i < n && p(i)) ++i;
    return i;
  }
};

// 's|'t|'re|'ve|'m|'ll|'d at i: its length in characters, 0 if none. Under (?i) Oniguruma folds
// case the Unicode way, which for these letters adds only U+017F LATIN SMALL LETTER LONG S ~ s
// (checked over every code point against tokenizers 0.23).
size_t contraction(const Decoded& d, size_t i, bool fold) {
  if (i >= d.n || d.cp(i) != '\'') return 0;
  auto is = [&](size_t k, char lower) {
    uint32_t c = d.cp(k);
    if (c == uint32_t(lower)) return true;
    if (!fold) return false;
    return c == uint32_t(lower - 'a' + 'A') || (lower == 's' && c == 0x17F);
  };
  if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd')) return 2;
  if ((is(i + 1, 'r') || is(i + 1, 'v')) && is(i + 2, 'e')) return 3;
  if (is(i + 1, 'l') && is(i + 2, 'l')) return 3;
  return 0;
}

// The whitespace alternatives shared by the three patterns, in their order.
//   newline_run: \s*[\r\n]+ (cl100k, o200k): whitespace up to and including the run's LAST
//                \r or \n (\s* is greedy and gives back characters until [\r\n] matches).
//   \s+(?!\S):   the whole run at the end of the text, else the run less its last character
//                (which then leads the next word), if that leaves at least one.
//   \s+:         the run (reached only for one space before a non-space).
size_t match_space(const Decoded& d, size_t i, bool newline_run, bool whole_run_at_end) {
  size_t w = d.run(i, [&](size_t k) { return d.S(k); });
  if (w == i) return i;
  if (whole_run_at_end && w == d.n) return w;  // tiktoken's \s++$
  if (newline_run) {
    for (size_t k = w; k-- > i;)
      if (d.crlf(k)) return k + 1;
  }
  if (w == d.n) return w;
  if (w - i >= 2) return w - 1;
  return w;
}

// Returns the end of the match at i (== i when no alternative matches there).
size_t match_gpt2(const Decoded& d, size_t i) {
  // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
  if (size_t k = contraction(d, i, false)) return i + k;
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+', in that order. Without the space, a space
  // at i matches none of the three classes, so "space then class, else class" is the regex.
  auto with_space = [&](auto cls) -> size_t {
    if (d.cp(i) == ' ' && i + 1 < d.n && cls(i + 1)) return d.run(i + 1, cls);
    if (cls(i)) return d.run(i, cls);
    return i;
  };
  auto L = [&](size_t k) { return k < d.n && d.L(k); };
  auto N = [&](size_t k) { return k < d.n && d.N(k); };
  auto P = [&](size_t k) { return d.punct(k); };
  if (size_t e = with_space(L); e > i) return e;
  if (size_t e = with_space(N); e > i) return e;
  if (size_t e = with_space(P); e > i) return e;
  return match_space(d, i, false, false);
}

// cl100k (HF form):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3}
//   | ' ?[^\s\p{L}\p{N}]+[\r\n]*' | \s*[\r\n]+ | \s+(?!\S) | \s+
// tiktoken's possessive form differs in \s++$ (a whitespace run at the end is whole) and in
// how Oniguruma reads its digits (below).
size_t match_cl100k(const Decoded& d, size_t i, bool tiktoken) {
  if (size_t k = contraction(d, i, true)) return i + k;
  auto L = [&](size_t k) { return k < d.n && d.L(k); };
  if (d.lead(i) && L(i + 1)) return d.run(i + 1, L);
  if (L(i)) return d.run(i, L);
  if (i < d.n && d.N(i)) {
    // Oniguruma (Ruby syntax) reads tiktoken's \p{N}{1,3}+ as (?:\p{N}{1,3})+, not as a
    // possessive {1,3}: under HF that spelling takes the whole run of digits.
    if (tiktoken) return d.run(i, [&](size_t k) { return d.N(k); });
    size_t e = i;
    while (e < d.n && e < i + 3 && d.N(e)) ++e;
    return e;
  }
  auto P = [&](size_t k) { return d.punct(k); };
  size_t j = d.cp(i) == ' ' && P(i + 1) ? i + 1 : P(i) ? i : d.n + 1;
  if (j <= d.n) return d.run(d.run(j, P), [&](size_t k) { return d.crlf(k); });
  return match_space(d, i, true, tiktoken);
}

// o200k:
//   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?
//   | [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?
//   | \p{N}{1,3} | ' ?[^\s\p{L}\p{N}]+[\r\n/]*' | \s*[\r\n]+ | \s+(?!\S) | \s+
size_t match_o200k(const Decoded& d, size_t i) {
  auto U = [&](size_t k) { return k < d.n && d.upper(k); };
  auto W = [&](size_t k) { return k < d.n && d.lower(k); };
  // First alternative from j: UPPER* takes its whole run, then gives characters back until a
  // LOWER follows (the classes overlap in Lm, Lo and marks); LOWER+ then runs greedily.
  auto upper_lower = [&](size_t j) -> size_t {
    size_t u = d.run(j, U);
    for (size_t k = u + 1; k-- > j;) {
      if (W(k)) {
        size_t e = d.run(k, W);
        return e + contraction(d, e, true);
      }
    }
    return 0;
  };
  // Second alternative from j: UPPER+ LOWER* and the optional contraction.
  auto upper_then = [&](size_t j) -> size_t {
    if (!U(j)) return 0;
    size_t e = d.run(d.run(j, U), W);
    return e + contraction(d, e, true);
  };
  if (d.lead(i))
    if (size_t e = upper_lower(i + 1)) return e;
  if (size_t e = upper_lower(i)) return e;
  if (d.lead(i))
    if (size_t e = upper_then(i + 1)) return e;
  if (size_t e = upper_then(i)) return e;
  if (i < d.n && d.N(i)) {
    size_t e = i;
    while (e < d.n && e < i + 3 && d.N(e)) ++e;
    return e;
  }
  auto P = [&](size_t k) { return d.punct(k); };
  size_t j = d.cp(i) == ' ' && P(i + 1) ? i + 1 : P(i) ? i : d.n + 1;
  if (j <= d.n) return d.run(d.run(j, P), [&](size_t k) { return d.crlf(k) || d.cp(k) == '/'; });
  return match_space(d, i, true, false);
}

class CodePointSplitter final : public Splitter {
 public:
  explicit CodePointSplitter(Pattern p) : p_(p) {}
  void split(std::string_view text, const EmitFn& emit) const override {
    Decoded d(text);
    size_t gap = 0;  // start of the text not matched yet, in characters
    for (size_t i = 0; i < d.n;) {
      size_t e = match(d, i);
      if (e == i) {  // no match here: regex search moves on one character
        ++i;
        continue;
      }
      if (gap < i) emit(d.off[gap], d.off[i], false);
      emit(d.off[i], d.off[e], true);
      i = gap = e;
    }
    if (gap < d.n) emit(d.off[gap], d.off[d.n], false);
  }

 private:
  size_t match(const Decoded& d, size_t i) const {
    switch (p_) {
      case Pattern::Gpt2:
        return match_gpt2(d, i);
      case Pattern::Cl100k:
        return match_cl100k(d, i, false);
      case Pattern::Cl100kTiktoken:
        return match_cl100k(d, i, true);
      case Pattern::O200k:
        return match_o200k(d, i);
    }
    return i;
  }
  Pattern p_;
};

// ---- other patterns ------------------------------------------------------------------------

// Any other regex, on Boost.Regex (Perl syntax) over the UTF-8 bytes: fine for ASCII classes
// and literals. Empty matches are dropped, as Hugging Face drops empty pieces.
class BoostSplitter final : public Splitter {
 public:
  explicit BoostSplitter(const std::string& pattern) {
    try {
      re_.assign(pattern, boost::regex::perl);
    } catch (const boost::regex_error& e) {
      fail("pre_tokenizer Split pattern '", pattern, "' is not a valid regex: ", e.what());
    }
  }
  void split(std::string_view text, const EmitFn& emit) const override {
    size_t gap = 0;
    boost::cregex_iterator it(text.data(), text.data() + text.size(), re_), end;
    for (; it != end; ++it) {
      size_t b = size_t((*it)[0].first - text.data()), e = size_t((*it)[0].second - text.data());
      if (e == b) continue;
      if (gap < b) emit(gap, b, false);
      emit(b, e, true);
      gap = e;
    }
    if (gap < text.size()) emit(gap, text.size(), false);
  }

 private:
  boost::regex re_;
};

class LiteralSplitter final : public Splitter {
 public:
  explicit LiteralSplitter(std::string s) : s_(std::move(s)) {
    check(!s_.empty(),
          "pre_tokenizer Split pattern {\"String\": \"\"} is empty: give the text to "
          "split on");
  }
  void split(std::string_view text, const EmitFn& emit) const override {
    size_t gap = 0;
    for (size_t b; (b = text.find(s_, gap)) != std::string_view::npos;) {
      if (gap < b) emit(gap, b, false);
      emit(b, b + s_.size(), true);
      gap = b + s_.size();
    }
    if (gap < text.size()) emit(gap, text.size(), false);
  }

 private:
  std::string s_;
};

std::unique_ptr<Splitter> make_splitter(const SplitStep& step) {
  if (step.literal) return std::make_unique<LiteralSplitter>(step.pattern);
  const std::string& p = step.pattern;
  if (p == kGpt2Pattern) return std::make_unique<CodePointSplitter>(Pattern::Gpt2);
  if (p == kCl100kPattern) return std::make_unique<CodePointSplitter>(Pattern::Cl100k);
  if (p == kCl100kTiktokenPattern)
    return std::make_unique<CodePointSplitter>(Pattern::Cl100kTiktoken);
  if (p == kO200kPattern) return std::make_unique<CodePointSplitter>(Pattern::O200k);
  if (p.find("\\p") != std::string::npos || p.find("\\P") != std::string::npos)
    fail("pre_tokenizer Split pattern '", p,
         "' uses Unicode properties (\\p{...}) and is not one of the patterns autotp knows "
         "(GPT-2, cl100k, o200k): add a matcher for it in lib/data/pretokenizer.cpp");
  return std::make_unique<BoostSplitter>(p);
}

}  // namespace

PreTokenizer::PreTokenizer(const PreTokenizerSpec& spec) : spec_(spec) {
  for (const SplitStep& s : spec.splits) steps_.push_back(make_splitter(s));
  if (spec.byte_level_regex) steps_.push_back(std::make_unique<CodePointSplitter>(Pattern::Gpt2));
}
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::run(size_t step, std::string_view text,
                       const std::function<void(std::string_view)>& fn) const {
  if (text.empty()) return;
  // ByteLevel prepends its space to every piece that reaches it, before its own regex.
  if (step == spec_.splits.size() && spec_.add_prefix_space && text[0] != ' ') {
    std::string spaced = " " + std::string(text);
    size_t steps = spec_.splits.size() + (spec_.byte_level_regex ? 1 : 0);
    if (step == steps) return fn(spaced);
    return steps_[step]->split(
        spaced, [&](size_t b, size_t e, bool) { fn(std::string_view(spaced).substr(b, e - b)); });
  }
  if (step == steps_.size()) return fn(text);
  bool remove = step < spec_.splits.size() && spec_.splits[step].remove_matches;
  steps_[step]->split(text, [&](size_t b, size_t e, bool is_match) {
    if (!(remove && is_match)) run(step + 1, text.substr(b, e - b), fn);
  });
}

void PreTokenizer::for_each_piece(std::string_view text,
                                  const std::function<void(std::string_view)>& fn) const {
  run(0, text, fn);
}

std::vector<std::string> PreTokenizer::pieces(std::string_view text) const {
  std::vector<std::string> out;
  for_each_piece(text, [&](std::string_view p) { out.emplace_back(p); });
  return out;
}

}  // namespace autotp
