#include "model/grad_buckets.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace autotp {

namespace {
// A group's element lo sits at (lo mod kAlign) in its bucket: every gradient keeps the
// alignment it has in a whole buffer (cuBLAS chooses kernels by the operands' alignment).
constexpr size_t kAlign = 64;
}  // namespace

GradBuckets::GradBuckets(Backend& be, std::vector<Group> groups)
    : be_(be), groups_(std::move(groups)) {
  const size_t n = groups_.size();
  by_lo_.resize(n);
  for (size_t g = 0; g < n; ++g) by_lo_[g] = g;
  std::sort(by_lo_.begin(), by_lo_.end(),
            [&](size_t a, size_t b) { return groups_[a].lo < groups_[b].lo; });
  size_t at = 0;
  for (size_t g : by_lo_) {
    const Group& G = groups_[g];
    check(G.lo == at && G.hi > G.lo, "gradient buckets: group [", G.lo, ", ", G.hi,
          ") does not continue at ", at, " (groups must tile the buffer)");
    at = G.hi;
  }
  base_.assign(n, nullptr);
  opened_.assign(n, 0);
  for (size_t g = 0; g < n; ++g)
    if (groups_[g].own) {
      own_.push_back(be_.alloc(bucket_numel(groups_[g])));
      base_[g] = own_.back() + groups_[g].lo % kAlign;
    }
  if (const size_t ring = ring_numel(groups_))
    for (auto& r : ring_) r = be_.alloc(ring);
}

size_t GradBuckets::bucket_numel(const Group& G) {
  return G.hi - G.lo + G.lo % kAlign;
}

size_t GradBuckets::ring_numel(const std::vector<Group>& groups) {
  size_t ring = 0;
  for (const Group& G : groups)
    if (!G.own) ring = std::max(ring, bucket_numel(G));
  return ring;
}

size_t GradBuckets::numel(const std::vector<Group>& groups) {
  size_t own = 0;
  for (const Group& G : groups)
    if (G.own) own += bucket_numel(G);
  return own + size_t(kRing) * ring_numel(groups);
}

GradBuckets::~GradBuckets() {
  for (float* p : own_) be_.free_bytes(p);
  for (float* p : ring_)
    if (p) be_.free_bytes(p);
}

size_t GradBuckets::group_of(size_t offset) const {
  auto it = std::upper_bound(by_lo_.begin(), by_lo_.end(), offset,
                             [&](size_t o, size_t g) { return o < groups_[g].lo; });
  check(it != by_lo_.begin() && offset < groups_[*std::prev(it)].hi, "gradient buckets: element ",
        offset, " lies in no group");
  return *std::prev(it);
}

void GradBuckets::new_pass() {
  std::fill(opened_.begin(), opened_.end(), 0);
}

void GradBuckets::open(size_t g, const std::function<void(size_t, size_t)>& release) {
  if (opened_[g]) return;
  opened_[g] = 1;
  const Group& G = groups_[g];
  if (G.own) {  // its bucket held it since the last backward
    release(G.lo, G.hi - G.lo);
    return;
  }
  const int k = next_;
  next_ = (next_ + 1) % kRing;
  if (holder_[k] >= 0) {
    const Group& old = groups_[size_t(holder_[k])];
    release(old.lo, old.hi - old.lo);
    base_[size_t(holder_[k])] = nullptr;
  }
  // The same group may still hold the other bucket (from the last backward): that copy is
  // released too, so that a range is never handed over twice at once.
  for (int j = 0; j < kRing; ++j)
    if (j != k && holder_[j] == long(g)) {
      release(G.lo, G.hi - G.lo);
      holder_[j] = -1;
    }
  holder_[k] = long(g);
  base_[g] = ring_[k] + G.lo % kAlign;
}

float* GradBuckets::at(size_t offset) const {
  const size_t g = group_of(offset);
  check(base_[g] != nullptr, "gradient buckets: the gradient at element ", offset,
        " was used after its bucket went to another group");
  return base_[g] + (offset - groups_[g].lo);
}

std::vector<const float*> GradBuckets::buffers() const {
  std::vector<const float*> b(own_.begin(), own_.end());
  for (float* r : ring_)
    if (r) b.push_back(r);
  return b;
}

}  // namespace autotp
