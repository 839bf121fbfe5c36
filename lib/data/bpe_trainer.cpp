#include "data/bpe_trainer.hpp"

#include <algorithm>
#include <map>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "core/error.hpp"
#include "data/added_tokens.hpp"
#include "data/byte_level.hpp"

namespace autotp {

namespace {

using Pair = uint64_t;  // (left id << 32) | right id
Pair pair_of(uint32_t a, uint32_t b) {
  return (uint64_t(a) << 32) | b;
}
uint32_t left_of(Pair p) {
  return uint32_t(p >> 32);
}
uint32_t right_of(Pair p) {
  return uint32_t(p);
}

struct Word {
  std::vector<uint32_t> syms;
  int64_t count;
};

// Counts the words of the corpus: cut at special tokens, then split by the pattern.
std::vector<Word> count_words(std::string_view corpus, const BpeTrainerOptions& o,
                              uint32_t first_byte_id) {
  std::vector<AddedToken> specials;
  for (size_t i = 0; i < o.special_tokens.size(); ++i)
    specials.push_back({o.special_tokens[i], uint32_t(i), true, false, false, false, false});
  AddedTokenSplitter cut(specials);
  PreTokenizerSpec ps;
  ps.splits.push_back({o.pattern, false, false});
  PreTokenizer pre(ps);
  std::unordered_map<std::string, int64_t> counts;
  cut.split(
      corpus,
      [&](std::string_view text) {
        pre.for_each_piece(text, [&](std::string_view w) { ++counts[std::string(w)]; });
      },
      [](uint32_t) {});
  std::map<std::string, int64_t> sorted(counts.begin(), counts.end());  // a fixed order
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [w, c] : sorted) {
    Word word{{}, c};
    for (unsigned char b : w) word.syms.push_back(first_byte_id + b);
    words.push_back(std::move(word));
  }
  return words;
}

}  // namespace

TokenizerSpec train_bpe(std::string_view corpus, const BpeTrainerOptions& o) {
  const int64_t k = int64_t(o.special_tokens.size());
  check(o.vocab_size >= k + 256, "vocab_size ", o.vocab_size, " is too small: the ", k,
        " special tokens and the 256 bytes alone take ", k + 256);
  std::unordered_set<std::string> seen;
  for (const std::string& s : o.special_tokens)
    check(!s.empty() && seen.insert(s).second, "special token '", s, "' is empty or given twice");

  // Token table: bytes of every token; specials are not in `by_bytes`, so no merge can land
  // on them (their text never reaches a word: it is cut out first).
  std::vector<std::string> bytes;
  for (const std::string& s : o.special_tokens) bytes.push_back(s);
  std::unordered_map<std::string, uint32_t> by_bytes;
  for (int b = 0; b < 256; ++b) {
    by_bytes[std::string(1, char(b))] = uint32_t(bytes.size());
    bytes.push_back(std::string(1, char(b)));
  }
  std::vector<Word> words = count_words(corpus, o, uint32_t(k));

  std::unordered_map<Pair, int64_t> count;
  std::unordered_map<Pair, std::vector<uint32_t>> where;  // words that hold the pair (or did)
  for (uint32_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w].syms;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      Pair p = pair_of(s[i], s[i + 1]);
      count[p] += words[w].count;
      auto& list = where[p];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }

  // Max-heap on (count, then the smaller byte pair). Entries go stale when a count changes;
  // every change pushes a fresh entry, so a popped entry is valid iff its count is current.
  struct Entry {
    int64_t count;
    Pair pair;
  };
  auto worse = [&](const Entry& x, const Entry& y) {  // true if x ranks below y
    if (x.count != y.count) return x.count < y.count;
    const std::string &xa = bytes[left_of(x.pair)], &ya = bytes[left_of(y.pair)];
    if (xa != ya) return xa > ya;
    return bytes[right_of(x.pair)] > bytes[right_of(y.pair)];
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (const auto& [p, c] : count) heap.push({c, p});

  TokenizerSpec spec;
  std::vector<uint32_t> stamp(words.size(), 0);  // dedups a word listed twice in one merge
  uint32_t merge_no = 0;
  int64_t vocab = k + 256;
  while (vocab < o.vocab_size) {
    Entry top{0, 0};
    for (;;) {
      check(!heap.empty(), "the corpus ran out of pairs to merge at vocabulary size ", vocab,
            " of the ", o.vocab_size, " asked for: give more text or a smaller vocab_size");
      top = heap.top();
      heap.pop();
      auto it = count.find(top.pair);
      if (it != count.end() && it->second == top.count && top.count > 0) break;
    }
    const uint32_t a = left_of(top.pair), b = right_of(top.pair);
    std::string merged = bytes[a] + bytes[b];
    uint32_t id;
    if (auto it = by_bytes.find(merged); it != by_bytes.end()) {
      id = it->second;  // reached before by another pair: the merge is listed, no new token
    } else {
      id = uint32_t(bytes.size());
      by_bytes.emplace(merged, id);
      bytes.push_back(merged);
      ++vocab;
    }
    spec.merges.emplace_back(bytes_to_token(bytes[a]), bytes_to_token(bytes[b]));
    ++merge_no;

    std::unordered_set<Pair> changed;
    std::vector<uint32_t> list = std::move(where[top.pair]);
    where.erase(top.pair);
    for (uint32_t w : list) {
      if (stamp[w] == merge_no) continue;
      stamp[w] = merge_no;
      auto& s = words[w].syms;
      const int64_t c = words[w].count;
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == a && s[i + 1] == b;
      if (!has) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        Pair p = pair_of(s[i], s[i + 1]);
        count[p] -= c;
        changed.insert(p);
      }
      std::vector<uint32_t> out;
      out.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          out.push_back(id);
          ++i;
        } else {
          out.push_back(s[i]);
        }
      }
      s = std::move(out);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        Pair p = pair_of(s[i], s[i + 1]);
        count[p] += c;
        changed.insert(p);
        // Pairs without the new token were in this word before, so it is already listed.
        if (s[i] == id || s[i + 1] == id) {
          auto& l = where[p];
          if (l.empty() || l.back() != w) l.push_back(w);
        }
      }
    }
    for (Pair p : changed) {
      auto it = count.find(p);
      if (it->second > 0) {
        heap.push({it->second, p});
      } else {
        count.erase(it);
      }
    }
  }

  for (size_t i = 0; i < bytes.size(); ++i) {
    bool special = int64_t(i) < k;
    std::string tok = special ? bytes[i] : bytes_to_token(bytes[i]);
    spec.vocab.emplace_back(tok, uint32_t(i));
    if (special) spec.added_tokens.push_back({tok, uint32_t(i), true, false, false, false, false});
  }
  spec.pre_tokenizer.splits.push_back({o.pattern, false, false});
  return spec;
}

}  // namespace autotp
