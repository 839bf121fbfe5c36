#pragma once
// ZeRO stage 0/1/2 AdamW over the model's flat fp32 buffers: Megatron's distributed optimizer
// (reduce each gradient shard to its owner -> AdamW on the fp32 shard -> all-gather), with
// global gradient-norm clipping across TP and DP.
//
// Sharding. The flat buffer of this rank's TP-local parameters (ParamLayout order, `total`
// elements) is padded to a multiple of dp; DP rank d owns [d*S, (d+1)*S), S = padded / dp,
// cut at `total` (padding is never stored or sent back). Each TP rank shards its own TP-local
// buffer over its DP group, so the shards of one DP rank differ across TP ranks.
//
//   stage 0: grads all-reduced over DP; every rank keeps master, m, v for the whole buffer.
//   stage 1: grads all-reduced over DP; master, m, v for the own shard only; params all-gathered.
//   stage 2: grads reduced over DP, each piece to the DP rank that owns it (together a
//            reduce-scatter): afterwards only the own shard of `grads` holds the averaged
//            gradient; state for the own shard only; params all-gathered.
// Stages 1 and 2 hold 3 * S floats of state per rank (master, m, v); all three stages compute
// the same parameters.
//
// Bucketed gradients (stage 2 over dp > 1, shards_grads(); grads = null): no rank holds a whole
// gradient buffer. The optimizer keeps the summed gradient of its own shard (S floats, fp32);
// the model's backward hands over each group of gradients as it finishes it
// (grads_ready(offset, count, g), g in a bucket of the model's, model/grad_buckets.hpp), whose
// pieces are reduced to their owners at once, and finish_grads() (before the model reuses the
// bucket, or in step()) waits for them and adds the own piece into the shard. With gradient
// accumulation every micro-batch is reduced so (DeepSpeed's ZeRO-2 does the same): the DP
// traffic is that of one step per micro-batch, where a whole buffer would be reduced once per
// step, in exchange for 4 bytes per parameter (x (1 - 1/dp)) never held.
//
// Gradient contract. The model accumulates micro-batch gradients into `grads`; the trainer
// scales each micro-batch by 1 / gradient_accumulation_steps, so `grads` holds this DP rank's
// mean gradient when step() is called. step() sums over DP and divides by dp: the update uses
// the mean over the global batch. step() zeroes the whole `grads` buffer before it returns
// (applied or skipped); zero_grad() is for the first accumulation (or after a checkpoint load).
// Zeroing is a pass over the buffer unless set_zero_grad() hands it to the model
// (Phi3Model::zero_grad defers it: the next backward overwrites instead of adding).
//
// Overlap. The DP sum of a range of grads can start as soon as the range is final: during the
// backward of the last micro-batch (Phi3Model::set_grads_ready -> grads_ready()), layer by
// layer, while the backward of the earlier layers goes on. The buffer is cut once into pieces,
// at the DP shard boundaries (each piece has one owner) and at multiples of bucket_numel; each
// piece is one async collective on `grads` in place (stages 0/1 all-reduce, stage 2 reduce to
// the owner), started when its last element is reported. step() starts the pieces not started
// yet, in layout order, and waits for all. The pieces do not depend on what was reported, so a
// run with the hook and one without make the same collectives on the same numbers: the same
// result, bit for bit. Every DP rank must report the same ranges in the same order
// (collectives match by order).
//
// Gradient norm: sqrt of the sum of squares of the DP-averaged gradient over every parameter
// of the model, counted once: TP-sharded slots on every TP rank, TP-replicated slots on
// tp_rank 0 only; each DP rank counts its own shard; summed over DP and TP. Clipping follows
// torch.nn.utils.clip_grad_norm_: coef = min(1, clip / (norm + 1e-6)) multiplies the gradients.
// A NaN or inf anywhere (counted or not) gives a non-finite norm: the update is skipped, the
// parameters and the state are left as they were, and the norm is returned for the trainer to
// stop the run.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "config/ds_config.hpp"
#include "dist/comm.hpp"
#include "kernels/backend.hpp"
#include "model/model_storage.hpp"
#include "model/param_layout.hpp"

namespace autotp {

struct StepStats {
  double grad_norm = 0.0;  // global norm of the averaged gradient, before clipping
  float clip_coef = 1.0f;  // the factor the gradients were multiplied by (1 = not clipped)
  bool applied = false;    // false: the norm is not finite and nothing was updated
};

// Optimizer state for elements [offset, offset + numel) of the flat TP-local buffer
// (ParamLayout order), in the backend's memory. Checkpoints save it per (TP rank, DP rank) and
// reshard by these ranges.
struct StateShard {
  float* data = nullptr;
  size_t numel = 0;
  size_t offset = 0;
};

class ZeroOptimizer {
 public:
  // Elements per collective call: the most one gradient piece holds; also bounds the
  // all-gather's scratch memory ((dp + 1) / dp of it) and keeps MPI messages under their
  // int count.
  static constexpr size_t kDefaultBucketNumel = size_t(1) << 22;

  // params and grads: the model's buffers of layout.total floats on `backend` (not owned, must
  // outlive this); grads null: bucketed gradients (shards_grads(zero_stage, dp.size()) must
  // hold). The master copy starts from params, which must be equal on every DP rank.
  // Where keeps_master_copy(), params may be narrow (Phi3Model narrow_weights): the optimizer
  // reads and writes them by value (Backend::copy_values), rounding its fp32 master into them.
  // Else params are the master copy and must be fp32.
  // grad_clip: ds_config gradient_clipping (0 = off). dp, tp: this rank's DP and TP groups,
  // able to address the backend's memory.
  ZeroOptimizer(const OptimizerConfig& opt, int zero_stage, double grad_clip,
                const ParamLayout& layout, float* params, float* grads, Comm& dp, Comm& tp,
                Backend& backend, size_t bucket_numel = kDefaultBucketNumel);
  ~ZeroOptimizer();
  ZeroOptimizer(const ZeroOptimizer&) = delete;
  ZeroOptimizer& operator=(const ZeroOptimizer&) = delete;

  // grads [offset, offset + count) holds its final value for this step: start its DP sum now
  // (collective over DP, async: the range must not change until step()). Ranges reported in
  // one step must not overlap. Bucketed gradients: g holds the range's values of this
  // micro-batch (changed in place; untouched by the caller until finish_grads() of the range
  // or step()); a range is reported once per micro-batch.
  void grads_ready(size_t offset, size_t count, float* g = nullptr);
  // Bucketed gradients: completes the DP sum of the range reported as [offset, offset + count)
  // and adds this rank's piece of it into its shard; nothing when that range is not pending.
  void finish_grads(size_t offset, size_t count);
  // One optimizer step at learning rate lr (collective over DP and TP): finishes the DP sum
  // (starting what grads_ready() did not). Zeroes grads.
  StepStats step(double lr);
  void zero_grad();
  // What zero_grad() (and step()) call to zero the gradients instead of filling the buffer.
  void set_zero_grad(std::function<void()> f) { zero_grad_fn_ = std::move(f); }

  // Whether grads may hold narrow values (Phi3Model::set_narrow_weight_grads): without DP
  // collectives, whose buffers are fp32, only sum_squares and adamw read them.
  bool reads_narrow_grads() const { return dp_.size() == 1; }
  int stage() const { return stage_; }
  const OptimizerConfig& config() const { return opt_; }
  double grad_clip() const { return clip_; }

  // Checkpoint access. step_count = updates applied so far (torch's state["step"]); the next
  // step uses bias corrections for step_count + 1.
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t n);
  // Stage 0: the whole buffer (offset 0, the same on every DP rank). Stages 1/2: the own shard.
  StateShard master() { return {master_, state_numel(), state_lo_}; }
  StateShard exp_avg() { return {m_, state_numel(), state_lo_}; }
  StateShard exp_avg_sq() { return {v_, state_numel(), state_lo_}; }
  bool state_replicated_over_dp() const { return stage_ == 0; }
  // The same state as host arrays (checkpoints): [state_offset(), + state_numel()).
  enum class State { Master, ExpAvg, ExpAvgSq };
  size_t state_offset() const { return state_lo_; }
  size_t state_numel() const { return state_hi_ - state_lo_; }
  std::vector<float> state_to_host(State which);
  void state_from_host(State which, const float* host);  // state_numel() values
  // Writes the master weights into params on every DP rank (collective over DP for stages
  // 1/2): after loading master from a checkpoint. Where the state covers the whole buffer
  // (stage 0, or dp = 1) the master IS params (no second fp32 copy) and this is a no-op.
  void publish_params();

  // Whether the optimizer keeps its own fp32 master copy (ZeRO-1/2 over several DP ranks: of
  // its shard only), so that the model's working weights need not be fp32: Megatron's
  // distributed optimizer, bf16 weights beside an fp32 master shard. Else the weights are the
  // master (a second fp32 copy would only cost 4 bytes per parameter).
  static bool keeps_master_copy(int zero_stage, int dp) { return zero_stage > 0 && dp > 1; }
  // Whether the gradients may be bucketed (see the top): ZeRO-2 over several DP ranks.
  static bool shards_grads(int zero_stage, int dp) { return zero_stage == 2 && dp > 1; }
  // The model storage this optimizer wants for a run at zero_stage over dp ranks.
  static ModelStorage model_storage(int zero_stage, int dp) {
    return {keeps_master_copy(zero_stage, dp), shards_grads(zero_stage, dp) ? dp : 0};
  }
  bool bucketed() const { return grads_ == nullptr; }
  // Bucketed: the summed gradient of the own shard (fp32, own range's size), else null.
  const float* grad_shard() const { return gshard_; }

  // [begin, end) of DP rank r's shard of a flat buffer of `total` elements.
  static std::pair<size_t, size_t> shard_range(size_t total, int dp, int r);

 private:
  float* state_buffer(State which);
  struct Piece {
    size_t begin, end;  // [begin, end) of grads: one collective
    size_t unreported;  // elements not reported ready this step; 0: started
  };
  void start_piece(const Piece& p);
  // The averaged gradient of element b of the own shard (after average_grads()).
  float* own_grad(size_t b) { return gshard_ ? gshard_ + (b - own_lo_) : grads_ + b; }
  // Bucketed: a reported range whose DP sum may still run.
  struct Reduced {
    size_t begin, end;
    float* g;     // its values, element begin at g[0]
    size_t mark;  // dp_.mark() after its collectives
  };
  void finish(const Reduced& r);
  void average_grads();
  double global_grad_norm();
  static double sum_over(Comm& c, double x);

  OptimizerConfig opt_;
  int stage_;
  double clip_;
  const ParamLayout& layout_;
  float* params_;
  float* grads_;
  Comm& dp_;
  Comm& tp_;
  size_t shard_size_ = 0;               // S
  size_t own_lo_ = 0, own_hi_ = 0;      // this DP rank's shard, cut at total
  size_t state_lo_ = 0, state_hi_ = 0;  // what master/m/v cover: own shard, or all (stage 0)
  size_t chunk_ = 1;                    // per-rank elements per all-gather call
  size_t bucket_numel_;
  std::vector<Piece> pieces_;          // in layout order; none when dp = 1
  std::map<size_t, size_t> reported_;  // begin -> end of the ranges reported this step
  std::vector<Reduced> reduced_;       // bucketed: reported, not yet finished, oldest first
  float* gshard_ = nullptr;            // bucketed: the own shard's summed gradient
  int64_t step_ = 0;
  Backend& be_;
  float *master_ = nullptr, *m_ = nullptr, *v_ = nullptr;  // state_numel() each, on be_
  bool master_is_params_ = false;  // master_ aliases params_ (the state covers the whole buffer)
  float* scratch_ = nullptr;       // (dp + 1) * chunk_: one all-gather's send and receive buffers
  std::function<void()> zero_grad_fn_;
};

}  // namespace autotp
