#pragma once
// The layout algebra of activations over a TP group (Megatron's parallel layers, generalised
// to whatever the plan says). An activation is [N, F] (N tokens, F features) and is either
//   R          replicated: every rank holds all F columns, or
//   S(parts)   sharded along F: F = sum(parts), each part cut into tp equal pieces, and rank r
//              holds piece r of every part, concatenated in part order (ShardSpec's rule, so
//              a column-split weight's output and a row-split weight's input line up with it).
// Partial sums (P) only exist inside a row-parallel linear or a vocab-parallel embedding,
// which all-reduce them to R at once.
//
// Gradients: the gradient of an R activation is kept FULL on every rank (each rank holds the
// whole true gradient); the gradient of an S activation is the true gradient of the local
// piece. Under that invariant the backward of a conversion is the opposite conversion:
//   S -> R (all-gather):  y = concat_r(x_r); dL/dx_r = the r-th piece of dL/dy, which every
//                         rank has in full, so the backward is a slice (no communication).
//   R -> S (slice):       each rank holds only dL/dy_r for its own piece; the full dL/dx is
//                         the concatenation of every rank's piece, so the backward is an
//                         all-gather (not an all-reduce: no rank holds a partial sum).
#include <cstdint>
#include <utility>
#include <vector>

#include "dist/comm.hpp"
#include "kernels/backend.hpp"

namespace autotp {

struct Layout {
  bool sharded = false;
  std::vector<int64_t> parts;  // S only: global sub-part sizes, sum = F

  static Layout R() { return {}; }
  static Layout S(std::vector<int64_t> parts) { return {true, std::move(parts)}; }
  bool operator==(const Layout& o) const {
    return sharded == o.sharded && (!sharded || parts == o.parts);
  }
  bool operator!=(const Layout& o) const { return !(*this == o); }
  int64_t full_width() const;  // S only
  // Columns this rank holds of an F-wide activation.
  int64_t local_width(int64_t F, int64_t tp) const { return sharded ? F / tp : F; }
  // Rank r's global [begin, end) column ranges, one per part (S only).
  std::vector<std::pair<int64_t, int64_t>> ranges(int64_t r, int64_t tp) const;
};

// The TP group as the model sees it: collectives and layout conversions on backend buffers.
class TpGroup {
 public:
  TpGroup(Backend& be, Comm& comm);
  ~TpGroup();
  TpGroup(const TpGroup&) = delete;
  TpGroup& operator=(const TpGroup&) = delete;

  int64_t size() const { return tp_; }
  int64_t rank() const { return rank_; }
  void all_reduce_sum(float* x, size_t n);
  void all_reduce_max(float* x, size_t n);

  // y (layout `to`) = x (layout `from`), both [N, F]. from == to copies.
  // The backward of convert(from, to) is convert(to, from) on the gradients (see above).
  void convert(const Layout& from, const Layout& to, const float* x, int64_t N, int64_t F,
               float* y);
  // S -> R: all-gather the pieces and put each into its global columns.
  void gather(const Layout& s, const float* x, int64_t N, int64_t F, float* y);
  // R -> S: this rank's columns of every part.
  void slice(const Layout& s, const float* x, int64_t N, int64_t F, float* y);
  // Allocates now the scratch that convert(a, b) and its backward convert(b, a) of [N, F]
  // need, so that no step allocates (and the sizing backend sees it: train/memory_plan.hpp).
  void reserve(const Layout& a, const Layout& b, int64_t N, int64_t F);

 private:
  float* scratch(int which, size_t n);  // grown on demand, kept between calls
  size_t gathered(int64_t N, int64_t F) const { return size_t(tp_ * N * (F / tp_)); }
  Backend& be_;
  Comm& comm_;
  int64_t tp_, rank_;
  float* buf_[2] = {nullptr, nullptr};
  size_t cap_[2] = {0, 0};
};

}  // namespace autotp
