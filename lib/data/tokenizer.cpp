#include "data/tokenizer.hpp"

#include <unordered_map>

#include "core/error.hpp"
#include "core/fnv1a.hpp"
#include "data/added_tokens.hpp"
#include "data/bpe.hpp"
#include "data/byte_level.hpp"

namespace autotp {

namespace {

std::vector<AddedToken> with_normalized(const std::vector<AddedToken>& all, bool normalized) {
  std::vector<AddedToken> out;
  for (const AddedToken& t : all)
    if (t.normalized == normalized) out.push_back(t);
  return out;
}

uint64_t fingerprint_of(const TokenizerSpec& s, const std::vector<std::string>& id_token) {
  uint64_t h = kFnv1aOffset;
  auto add = [&](std::string_view x) {
    h = fnv1a(x, h);
    h = fnv1a(std::string_view("\0", 1), h);
  };
  for (const std::string& t : id_token) add(t);
  for (const auto& [a, b] : s.merges) add(a), add(b);
  for (const AddedToken& t : s.added_tokens) {
    add(t.content);
    add(std::to_string(t.id) + (t.special ? "s" : "") + (t.lstrip ? "l" : "") +
        (t.rstrip ? "r" : "") + (t.normalized ? "n" : ""));
  }
  for (const SplitStep& st : s.pre_tokenizer.splits)
    add(st.pattern + (st.literal ? "L" : "") + (st.remove_matches ? "R" : ""));
  add(std::string(s.pre_tokenizer.byte_level_regex ? "B" : "") +
      (s.pre_tokenizer.add_prefix_space ? "P" : "") + (s.ignore_merges ? "I" : "") + s.unk_token +
      (s.fuse_unk ? "F" : ""));
  return h;
}

}  // namespace

struct Tokenizer::Impl {
  TokenizerSpec spec;
  std::string source;
  BpeModel bpe;
  PreTokenizer pre;
  AddedTokenSplitter raw_added, normalized_added;
  std::vector<std::string> id_token, id_bytes;  // "" for ids nothing uses
  std::vector<uint8_t> present, special;
  std::unordered_map<std::string, uint32_t> added_by_content;
  uint64_t fingerprint = 0;

  Impl(TokenizerSpec s, std::string src)
      : spec(std::move(s)),
        source(std::move(src)),
        bpe(spec, source),
        pre(spec.pre_tokenizer),
        raw_added(with_normalized(spec.added_tokens, false)),
        normalized_added(with_normalized(spec.added_tokens, true)) {
    uint32_t max_id = bpe.max_id();
    for (const AddedToken& t : spec.added_tokens) {
      check(!t.content.empty(), source, ": added token id ", t.id, " has empty content");
      check(!t.single_word, source, ": added token '", t.content,
            "' has single_word=true, which autotp does not support: set it to false if the "
            "token never appears inside a word");
      check(added_by_content.emplace(t.content, t.id).second, source, ": added token '", t.content,
            "' is listed twice");
      max_id = std::max(max_id, t.id);
    }
    id_token.resize(size_t(max_id) + 1);
    present.resize(id_token.size());
    special.resize(id_token.size());
    for (const auto& [tok, id] : spec.vocab) id_token[id] = tok, present[id] = 1;
    for (const AddedToken& t : spec.added_tokens)  // an added token wins over the vocabulary
      id_token[t.id] = t.content, present[t.id] = 1, special[t.id] = t.special;
    id_bytes.resize(id_token.size());
    for (size_t i = 0; i < id_token.size(); ++i) id_bytes[i] = token_to_bytes(id_token[i]);
    fingerprint = fingerprint_of(spec, id_token);
  }
};

Tokenizer::Tokenizer(TokenizerSpec spec, std::string source)
    : impl_(std::make_unique<Impl>(std::move(spec), std::move(source))) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

void Tokenizer::encode(std::string_view text, std::vector<uint32_t>& out) const {
  const Impl& m = *impl_;
  auto on_token = [&](uint32_t id) { out.push_back(id); };
  auto on_word = [&](std::string_view w) { m.bpe.encode_word(w, out); };
  auto on_text = [&](std::string_view piece) {
    if (m.normalized_added.empty()) return m.pre.for_each_piece(piece, on_word);
    m.normalized_added.split(
        piece, [&](std::string_view p) { m.pre.for_each_piece(p, on_word); }, on_token);
  };
  m.raw_added.split(text, on_text, on_token);
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<uint32_t> out;
  encode(text, out);
  return out;
}

std::string Tokenizer::decode(const std::vector<uint32_t>& ids, bool skip_special) const {
  std::string out;
  for (uint32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    out += token_bytes(id);
  }
  return out;
}

int64_t Tokenizer::vocab_size() const {
  return int64_t(impl_->id_token.size());
}

std::optional<uint32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return it->second;
  return impl_->bpe.token_to_id(token);
}

const std::string& Tokenizer::id_to_token(uint32_t id) const {
  check(id < impl_->id_token.size() && impl_->present[id], "token id ", id,
        " is not in the vocabulary of ", impl_->source, " (vocab_size ", vocab_size(), ")");
  return impl_->id_token[id];
}

const std::string& Tokenizer::token_bytes(uint32_t id) const {
  id_to_token(id);  // checks the id
  return impl_->id_bytes[id];
}

bool Tokenizer::is_special(uint32_t id) const {
  return id < impl_->special.size() && impl_->special[id];
}

uint32_t Tokenizer::added_token_id(std::string_view content) const {
  auto it = impl_->added_by_content.find(std::string(content));
  check(it != impl_->added_by_content.end(), "tokenizer ", impl_->source, " has no added token '",
        content, "': add it to added_tokens or name another one");
  return it->second;
}

uint64_t Tokenizer::fingerprint() const {
  return impl_->fingerprint;
}
const TokenizerSpec& Tokenizer::spec() const {
  return impl_->spec;
}
const std::string& Tokenizer::source() const {
  return impl_->source;
}

}  // namespace autotp
