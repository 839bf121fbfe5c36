#pragma once
// Phi3ForCausalLM (Phi-4, Phi-4-mini, the text model of Phi-4-multimodal) with hand-written
// forward and backward passes, tensor-parallel over a Comm as the PartitionPlan says, on a
// Backend. Whatever the plan, the model computes the same function as transformers' fp32
// Phi3ForCausalLM (eager attention): each weight is used the way its ShardSpec splits it
// (column / row / replicated, see parallel_linear.hpp), and activations are converted between
// layouts where producer and consumer disagree (tp_layout.hpp).
//
// Usage per step:  zero_grad(); loss = forward(ids, targets, B, T); backward(scale); ...
// The optimizer updates params() from grads() (flat, ParamLayout order), then calls
// params_changed().
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "dist/comm.hpp"
#include "kernels/backend.hpp"
#include "model/parallel_linear.hpp"
#include "model/param_layout.hpp"
#include "model/rope_table.hpp"
#include "model/tp_layout.hpp"
#include "partition/plan.hpp"

namespace autotp {

class ModelFileReader;

class Phi3Model {
 public:
  static constexpr int32_t kIgnoreIndex = -100;

  // plan: for every parameter of `config` (in ModelConfig::parameters() order) its split over
  // the tp_comm.size() ranks of the TP group; tp_rank = tp_comm.rank(). The model keeps a copy
  // of the plan and allocates its parameters and gradients (zeroed) on the backend.
  Phi3Model(const ModelConfig& config, const PartitionPlan& plan, int tp_rank, Comm& tp_comm,
            Backend& backend);
  ~Phi3Model();
  Phi3Model(const Phi3Model&) = delete;
  Phi3Model& operator=(const Phi3Model&) = delete;

  // transformers' _init_weights: linears and the embedding ~ N(0, initializer_range) (0.02
  // unless config.json says otherwise), norms = 1, the embedding's padding row = 0. Values
  // come from a counter-based generator keyed by (seed, name, index in the full tensor), so
  // every TP degree and plan gives the same full model.
  void init_random(uint64_t seed);
  // Reads this rank's shard of every parameter (any stored dtype, converted to fp32).
  void load(const ModelFileReader& file);

  // inputs, targets: host arrays [B*T]; targets[b*T + t] is the label of position t (already
  // shifted: callers pass input[t+1]) or kIgnoreIndex. targets may be null (logits only).
  // Returns the mean cross-entropy over targets != kIgnoreIndex (0 when there are none) and
  // keeps what backward() needs.
  float forward(const int32_t* inputs, const int32_t* targets, int B, int T);
  // Accumulates (+=) d(grad_scale * loss)/d(params) into grads(). Once per forward().
  void backward(float grad_scale = 1.0f);
  void zero_grad();
  // The full logits [B*T, V] of the last forward (gathered over TP; call before backward(),
  // which overwrites them). Every rank of the TP group must call it.
  std::vector<float> gather_logits();
  int64_t num_targets() const { return num_targets_; }  // targets counted by the last forward
  // How this rank runs the plan, one line per part, for logs: e.g.
  //   embedding: vocab-parallel (rows 0-15 of 32)
  //   layer 0: attention on local heads (q 4/8, kv 2/4), MLP on local columns
  //   lm_head: column-parallel, vocab-parallel cross-entropy
  std::string describe() const;

  const ModelConfig& config() const { return config_; }
  const PartitionPlan& plan() const { return plan_; }
  const ParamLayout& layout() const { return layout_; }
  int tp_rank() const { return int(tg_.rank()); }
  int tp_size() const { return int(tg_.size()); }
  Backend& backend() { return be_; }
  // Flat fp32 buffers on the backend's device, ParamLayout order.
  float* params() { return params_; }
  float* grads() { return grads_; }
  const float* params() const { return params_; }
  const float* grads() const { return grads_; }
  void params_changed();  // after the optimizer wrote params()

  // Host copies of one parameter's local shard (ShardSpec::local_shape order).
  std::vector<float> param_shard(const std::string& name) const;
  std::vector<float> grad_shard(const std::string& name) const;
  void set_param_shard(const std::string& name, const float* host);

 private:
  enum class EmbedSplit { Replicated, Vocab, Hidden };
  struct Layer {
    size_t ln1 = 0, ln2 = 0;  // norm weight offsets
    LinearSite qkv, o, gate_up, down;
    // Attention input (qkv) and output: S over whole local heads, or R (all heads).
    Layout qkv_layout, att_layout;
    int64_t nq = 0, nkv = 0;  // heads this rank computes
    // SwiGLU input [gate | up] and output: S when gate and up are split alike, or R.
    Layout gu_layout, act_layout;
  };
  // What the backward of one layer needs, plus the residual stream.
  struct LayerActs {
    float *ln1, *rstd1, *qkv_xin, *att_in, *att_out, *lse, *o_xin, *mid, *ln2, *rstd2, *gu_xin,
        *sw_in, *act, *down_xin;
  };

  void ensure_buffers(int B, int T);
  void free_buffers();
  float* buf(size_t n);
  void layer_forward(int l, int64_t B, int64_t T);
  void layer_backward(int l, int64_t B, int64_t T);
  std::vector<float> slot_to_host(const float* base, const std::string& name) const;

  ModelConfig config_;
  PartitionPlan plan_;
  ParamLayout layout_;
  Backend& be_;
  TpGroup tg_;
  float* params_ = nullptr;
  float* grads_ = nullptr;

  // Structure decided once from the plan.
  int64_t H_, hd_, rd_, I_, V_;
  Layout embed_layout_;
  EmbedSplit embed_split_ = EmbedSplit::Replicated;
  size_t embed_off_ = 0, norm_off_ = 0;
  int64_t embed_dim_ = 0;  // local columns of the embedding table
  std::vector<VocabBlock> embed_blocks_, logit_blocks_;
  std::vector<Layer> layers_;
  LinearSite lm_head_;
  bool vocab_parallel_ce_ = false;
  int64_t logits_width_ = 0;  // local logits columns

  // Per-(B, T) buffers.
  int B_ = 0, T_ = 0;
  std::vector<void*> allocs_;
  int32_t *ids_ = nullptr, *tgt_ = nullptr;
  float *cos_ = nullptr, *sin_ = nullptr;
  std::vector<float*> res_;  // residual stream: input of layer l, res_[L] = final hidden
  std::vector<LayerActs> acts_;
  float *lnf_, *rstdf_, *lm_xin_, *logits_, *ce_;  // ce_ = [max | sumexp | target logit]
  float *sc_y_, *sc_out_, *sc_dy_, *sc_dx_, *sc_d1_, *sc_d2_, *d_ln_, *dres_;
  RopeTable rope_;

  // State of the last forward.
  bool have_forward_ = false, have_targets_ = false, logits_valid_ = false;
  int64_t num_targets_ = 0;
};

}  // namespace autotp
