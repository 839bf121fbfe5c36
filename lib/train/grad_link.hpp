#pragma once
// How a training step hands the model's gradients to the ZeRO optimizer: one place for
// autotp-train's step loop and autotp-bench's.
#include <cstdint>

#include "core/error.hpp"
#include "model/phi3_model.hpp"
#include "optim/zero_optimizer.hpp"

namespace autotp {

// For steps of `accum` micro-batches: the optimizer zeroes the gradients through the model
// (lazily: each step's first backward overwrites them), the linear weights' gradients are
// narrow where the optimizer reads them so and no later micro-batch adds to them (accumulating
// adds in fp32), and the gradients start at zero. The model must have been built with
// opt's model_storage().
class GradLink {
 public:
  GradLink(Phi3Model& model, ZeroOptimizer& opt, int64_t accum)
      : model_(model),
        accum_(accum),
        bucketed_(opt.bucketed()),
        ready_([&opt](size_t o, size_t c, float* g) { opt.grads_ready(o, c, g); }) {
    check(model.grad_buckets() == opt.bucketed(), "GradLink: the model's gradients are ",
          model.grad_buckets() ? "bucketed" : "whole", " but the optimizer's are ",
          opt.bucketed() ? "bucketed" : "whole",
          " (build the model with the optimizer's ZeroOptimizer::model_storage)");
    opt.set_zero_grad([&model] { model.zero_grad(); });
    model.set_narrow_weight_grads(opt.reads_narrow_grads() && accum == 1);
    model.set_grads_release([&opt](size_t o, size_t c) { opt.finish_grads(o, c); });
    opt.zero_grad();
  }
  // Before micro-batch m (0-based) of a step: the last one's backward starts each layer's DP
  // sum as soon as the layer's gradients are final, while the earlier layers' backward runs.
  // Bucketed gradients are handed over at every micro-batch (their buckets are reused).
  void before_micro_batch(int64_t m) {
    model_.set_grads_ready(m + 1 == accum_ || bucketed_ ? ready_ : nullptr);
  }

 private:
  Phi3Model& model_;
  int64_t accum_;
  bool bucketed_;
  Phi3Model::GradsReadyFn ready_;
};

}  // namespace autotp
