#pragma once
// Gradient storage for a model whose gradients are never whole: ZeRO-2 over DP > 1, where each
// DP rank keeps only the summed gradient of its own 1/dp shard (in the optimizer) and what the
// backward computes lives only until it has been reduced to its owners (Megatron's and
// DeepSpeed's gradient buckets).
//
// A backward finishes the flat gradient buffer (ParamLayout order) group by group: the tail (the
// final norm and an untied lm_head), each layer from the last to the first, the embedding. A
// group gets storage when the backward first writes it (open) and is handed to the optimizer
// when final (Phi3Model's GradsReadyFn starts its DP reduce). The storage is a ring of kRing
// buckets, each the size of the largest group: opening a group takes the next bucket once the
// receiver has released the group that bucket held (Phi3Model's GradsReleaseFn waits for that
// reduce and adds the owner's part into its shard). With two buckets one group's reduce runs
// while the backward fills the other. A group written from the first op of the backward to its
// last (the embedding when the lm_head is tied to it) has a bucket of its own.
//
// Memory, fp32: kRing x the largest group (+ the tied embedding) instead of the whole buffer.
// Phi-4-mini at TP 1 (tied; a layer 100.7M elements, the embedding 614M): 815M elements for 8
// layers (1.42G whole), the same 815M for all 32 (3.84G whole).
#include <cstddef>
#include <functional>
#include <vector>

#include "kernels/backend.hpp"

namespace autotp {

class GradBuckets {
 public:
  static constexpr int kRing = 2;
  struct Group {
    size_t lo = 0, hi = 0;  // [lo, hi) of the flat buffer
    bool own = false;       // a bucket of its own instead of the ring's
  };
  // groups: in the order a backward opens them; together they tile [0, total).
  GradBuckets(Backend& be, std::vector<Group> groups);
  // The elements the buckets of `groups` take.
  static size_t numel(const std::vector<Group>& groups);
  ~GradBuckets();
  GradBuckets(const GradBuckets&) = delete;
  GradBuckets& operator=(const GradBuckets&) = delete;

  // The group holding element `offset` of the flat buffer.
  size_t group_of(size_t offset) const;
  // A new backward: each group is opened again before it is written.
  void new_pass();
  bool opened(size_t g) const { return opened_[g] != 0; }
  // Gives group g a bucket for this backward (a no-op when it has one already). Before a ring
  // bucket changes hands, release(lo, count) is called with the range that held it.
  void open(size_t g, const std::function<void(size_t lo, size_t count)>& release);
  // Element `offset` in its group's bucket; the group must hold one (opened in this backward,
  // or its bucket not taken since).
  float* at(size_t offset) const;
  // The buckets (for the memory plan).
  std::vector<const float*> buffers() const;

 private:
  static size_t bucket_numel(const Group& G);                  // with its alignment offset
  static size_t ring_numel(const std::vector<Group>& groups);  // each ring bucket
  Backend& be_;
  std::vector<Group> groups_;
  std::vector<size_t> by_lo_;  // group indices by lo
  std::vector<float*> base_;   // per group: its bucket while it holds one, else null
  std::vector<char> opened_;   // per group: opened in this backward
  std::vector<float*> own_;    // the own buckets
  float* ring_[kRing] = {};
  long holder_[kRing] = {-1, -1};  // the group holding each ring bucket
  int next_ = 0;                   // the ring bucket the next ring group takes
};

}  // namespace autotp
