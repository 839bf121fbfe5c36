#include "data/bpe.hpp"

#include <queue>

#include "core/error.hpp"
#include "data/byte_level.hpp"
#include "data/tokenizer.hpp"

namespace autotp {

namespace {
constexpr size_t kCacheLimit = 1 << 18;  // words; cleared when full (HF keeps 10k)
}

BpeModel::BpeModel(const TokenizerSpec& spec, const std::string& source)
    : ignore_merges_(spec.ignore_merges), fuse_unk_(spec.fuse_unk) {
  check(!spec.vocab.empty(), source, ": model.vocab is empty");
  for (const auto& [tok, id] : spec.vocab) {
    check(vocab_.emplace(tok, id).second, source, ": model.vocab holds '", tok, "' twice");
    max_id_ = std::max(max_id_, id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(bytes_to_token(std::string(1, char(b))));
    byte_id_[b] = it == vocab_.end() ? -1 : int64_t(it->second);
  }
  if (!spec.unk_token.empty()) {
    auto it = vocab_.find(spec.unk_token);
    check(it != vocab_.end(), source, ": model.unk_token '", spec.unk_token,
          "' is not in model.vocab");
    unk_id_ = it->second;
  }
  // Like HF, a pair listed twice keeps its later rank.
  for (size_t r = 0; r < spec.merges.size(); ++r) {
    const auto& [a, b] = spec.merges[r];
    auto ia = vocab_.find(a), ib = vocab_.find(b), ic = vocab_.find(a + b);
    auto where = [&] {
      return source + ": model.merges[" + std::to_string(r) + "] '" + a + " " + b;
    };
    check(ia != vocab_.end(), where(), "': '", a, "' is not in model.vocab");
    check(ib != vocab_.end(), where(), "': '", b, "' is not in model.vocab");
    check(ic != vocab_.end(), where(), "': the merged token '", a + b, "' is not in model.vocab");
    merges_[key(ia->second, ib->second)] = {uint32_t(r), ic->second};
  }
}

std::optional<uint32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const BpeModel::Merge* BpeModel::find_merge(uint32_t a, uint32_t b) const {
  auto it = merges_.find(key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

// Word::merge_all: a min-heap of candidate merges keyed by (rank, position); a popped entry
// is stale when its left symbol was merged away or its right neighbour changed.
void BpeModel::merge_all(std::vector<uint32_t>& ids) const {
  struct Sym {
    uint32_t id;
    int64_t prev, next;
    bool alive;
  };
  struct Cand {
    uint32_t rank;
    size_t pos;
    uint32_t new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int64_t n = int64_t(ids.size());
  std::vector<Sym> s(n);
  for (int64_t i = 0; i < n; ++i) s[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  for (int64_t i = 0; i + 1 < n; ++i)
    if (const Merge* m = find_merge(s[i].id, s[i + 1].id))
      heap.push({m->rank, size_t(i), m->new_id});

  while (!heap.empty()) {
    Cand top = heap.top();
    heap.pop();
    Sym& left = s[top.pos];
    if (!left.alive || left.next < 0) continue;
    Sym& right = s[left.next];
    const Merge* m = find_merge(left.id, right.id);
    if (!m || m->new_id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) s[right.next].prev = int64_t(top.pos);
    if (left.prev >= 0)
      if (const Merge* p = find_merge(s[left.prev].id, left.id))
        heap.push({p->rank, size_t(left.prev), p->new_id});
    if (left.next >= 0)
      if (const Merge* p = find_merge(left.id, s[left.next].id))
        heap.push({p->rank, top.pos, p->new_id});
  }
  ids.clear();
  for (const Sym& x : s)
    if (x.alive) ids.push_back(x.id);
}

void BpeModel::encode_word(std::string_view bytes, std::vector<uint32_t>& out) const {
  if (bytes.empty()) return;
  std::string token = bytes_to_token(bytes);
  if (ignore_merges_) {
    auto it = vocab_.find(token);
    if (it != vocab_.end()) return out.push_back(it->second);
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(token);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<uint32_t> ids;
  ids.reserve(bytes.size());
  bool last_unk = false;
  for (unsigned char b : bytes) {
    if (byte_id_[b] >= 0) {
      ids.push_back(uint32_t(byte_id_[b]));
      last_unk = false;
    } else if (unk_id_ >= 0) {  // HF: unknown symbols become unk (fused if fuse_unk)
      if (!(fuse_unk_ && last_unk)) ids.push_back(uint32_t(unk_id_));
      last_unk = true;
    }  // else dropped, as HF does without unk_token and byte_fallback
  }
  merge_all(ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kCacheLimit) cache_.clear();
  cache_.emplace(std::move(token), std::move(ids));
}

}  // namespace autotp
