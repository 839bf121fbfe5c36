#pragma once
// How a Phi3Model keeps its parameters and gradients: as the optimizer that updates them wants
// (ZeroOptimizer::model_storage), so that no rank holds a full-precision copy nobody reads.
namespace autotp {

struct ModelStorage {
  // The parameters come from alloc_narrow (bf16 on CUDA, 2 bytes each) for an optimizer that
  // keeps the fp32 master copy itself; values written into them (init, load, the optimizer's
  // update) are rounded.
  bool narrow_weights = false;
  // > 1: the gradients may live in GradBuckets (model/grad_buckets.hpp), each group handed over
  // as the backward finishes it, for a ZeRO-2 optimizer over this many DP ranks that keeps only
  // its 1/dp shard of the summed gradient; then no whole gradient buffer exists
  // (Phi3Model::grads() is null). The model takes them where the buckets and that shard together
  // are smaller than the whole buffer: at every real size, but not where a tied embedding
  // outweighs the layers (8 Phi-4-mini layers at DP 2, the tiny test model).
  int grad_bucket_dp = 0;
};

}  // namespace autotp
