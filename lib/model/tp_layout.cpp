#include "model/tp_layout.hpp"

#include "core/error.hpp"
#include "partition/plan.hpp"

namespace autotp {

int64_t Layout::full_width() const {
  int64_t F = 0;
  for (auto p : parts) F += p;
  return F;
}

std::vector<std::pair<int64_t, int64_t>> Layout::ranges(int64_t r, int64_t tp) const {
  // The same rule as a weight split along this dim: reuse ShardSpec's arithmetic.
  ShardSpec s;
  s.shape = {full_width()};
  s.split_dim = 0;
  s.parts = parts;
  s.tp = tp;
  return s.ranges(r);
}

TpGroup::TpGroup(Backend& be, Comm& comm)
    : be_(be), comm_(comm), tp_(comm.size()), rank_(comm.rank()) {}

TpGroup::~TpGroup() {
  for (auto* b : buf_)
    if (b) be_.free_bytes(b);
}

float* TpGroup::scratch(int which, size_t n) {
  if (cap_[which] < n) {
    if (buf_[which]) be_.free_bytes(buf_[which]);
    buf_[which] = be_.alloc(n);
    cap_[which] = n;
  }
  return buf_[which];
}

void TpGroup::all_reduce_sum(float* x, size_t n) {
  if (tp_ > 1) comm_.all_reduce_sum(x, n);
}

void TpGroup::all_reduce_max(float* x, size_t n) {
  if (tp_ > 1) comm_.all_reduce_max(x, n);
}

void TpGroup::gather(const Layout& s, const float* x, int64_t N, int64_t F, float* y) {
  const int64_t Fl = F / tp_;
  float* all = scratch(0, gathered(N, F));
  comm_.all_gather(x, all, size_t(N * Fl));  // [tp][N, Fl], rank-major
  for (int64_t r = 0; r < tp_; ++r) {
    int64_t local_col = 0;
    for (auto [b, e] : s.ranges(r, tp_)) {
      be_.copy_cols(all + r * N * Fl, Fl, local_col, y, F, b, N, e - b, false);
      local_col += e - b;
    }
  }
}

void TpGroup::slice(const Layout& s, const float* x, int64_t N, int64_t F, float* y) {
  const int64_t Fl = F / tp_;
  int64_t local_col = 0;
  for (auto [b, e] : s.ranges(rank_, tp_)) {
    be_.copy_cols(x, F, b, y, Fl, local_col, N, e - b, false);
    local_col += e - b;
  }
}

void TpGroup::reserve(const Layout& a, const Layout& b, int64_t N, int64_t F) {
  if (a == b || tp_ == 1) return;  // a copy, or a slice one way and a gather the other
  scratch(0, gathered(N, F));
  if (a.sharded && b.sharded) scratch(1, size_t(N * F));  // S -> S' goes through R
}

void TpGroup::convert(const Layout& from, const Layout& to, const float* x, int64_t N, int64_t F,
                      float* y) {
  if (from == to || tp_ == 1) {
    be_.copy(x, y, size_t(N * from.local_width(F, tp_)) * sizeof(float));
  } else if (from.sharded && !to.sharded) {
    gather(from, x, N, F, y);
  } else if (!from.sharded && to.sharded) {
    slice(to, x, N, F, y);
  } else {  // S -> S' with other parts: through R
    float* full = scratch(1, size_t(N * F));
    gather(from, x, N, F, full);
    slice(to, full, N, F, y);
  }
}

}  // namespace autotp
