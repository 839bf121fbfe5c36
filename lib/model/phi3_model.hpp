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
// params_changed(). With bucketed gradients (ModelStorage) the optimizer receives each group of
// gradients as the backward finishes it instead (set_grads_ready, set_grads_release).
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "dist/comm.hpp"
#include "kernels/backend.hpp"
#include "model/grad_buckets.hpp"
#include "model/model_storage.hpp"
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
  // storage: narrow weights and bucketed gradients, as the optimizer wants them
  // (ZeroOptimizer::model_storage; model/model_storage.hpp).
  Phi3Model(const ModelConfig& config, const PartitionPlan& plan, int tp_rank, Comm& tp_comm,
            Backend& backend, ModelStorage storage = {});
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
  // forward() then backward(grad_scale) in one call, for training: the same arithmetic in the
  // same order (the same loss and gradients), but each logits chunk's backward runs right
  // after its loss, so no chunk is computed twice. targets must be set.
  float forward_backward(const int32_t* inputs, const int32_t* targets, int B, int T,
                         float grad_scale = 1.0f);
  // Called during backward() each time a range [offset, offset + count) of the gradients holds
  // its final value for this backward, in the order the ranges become final (the final norm and
  // an untied lm_head, then the layers from the last to the first, then the embedding), with g
  // = where its values are (grads() + offset, or in a bucket); together the calls cover every
  // element once. The optimizer starts reducing a range over DP while the backward goes on
  // (ZeroOptimizer::grads_ready), and may change g's values in place. Empty (the default): not
  // called. Bucketed gradients need it at every backward (the buckets are reused).
  using GradsReadyFn = std::function<void(size_t offset, size_t count, float* g)>;
  void set_grads_ready(GradsReadyFn f) { grads_ready_ = std::move(f); }
  // Bucketed gradients: called before the backward writes over the bucket of a range it
  // reported ready earlier (this backward or the last), with that range; the receiver must be
  // done with its values (ZeroOptimizer::finish_grads).
  using GradsReleaseFn = std::function<void(size_t offset, size_t count)>;
  void set_grads_release(GradsReleaseFn f) { grads_release_ = std::move(f); }
  // The layers' linear weight gradients are written narrow (bf16: the values autocast computes)
  // where the backward overwrites them (the first micro-batch of a step), for an optimizer that
  // reads them so (ZeroOptimizer::reads_narrow_grads). Off by default. With gradient
  // accumulation it only costs: the next micro-batch widens them to add in fp32.
  void set_narrow_weight_grads(bool on) { narrow_grads_ = on; }
  // grads() = 0, lazily: the next backward writes each parameter's gradient instead of adding
  // to it, so no pass zeroes the buffer and the first GEMM of each weight does not read it. A
  // gradient that backward does not write is zeroed before its range is reported final (and at
  // its end); until then grad_shard() reads zeros and grads() holds stale values.
  void zero_grad();
  // The full logits [B*T, V] of the last forward (gathered over TP; call before backward()),
  // recomputed chunk by chunk (see below) from the final hidden states where the forward no
  // longer holds them. Every rank of the TP group must call it.
  std::vector<float> gather_logits();
  // The lm_head and cross-entropy run over the B*T token rows in chunks of `rows`, so only one
  // chunk's logits [rows, local vocab] exist at a time (Phi-4-mini at 8192 rows: 6 GiB of fp32
  // logits for the whole batch). backward() recomputes the logits of every chunk but the last,
  // which the forward left in place; forward_backward() computes each chunk once. rows <= 0
  // (the default): the fewest equal chunks whose logits fit kLogitsChunkBytes. Takes effect at
  // the next forward(); every rank of the TP group must use the same value. With
  // forward_backward() more chunks cost smaller GEMMs and a pass over the lm_head's weight
  // gradient each: 4 of 2048 rows at Phi-4-mini's 8192 were 1.5 ms (1%) slower than 2 of 4096
  // (tests/gpu/NOTES.md has the measurements). The budget counts the bytes the backend keeps per
  // logit (narrow_bytes() when the chunk is narrow): on CUDA, one chunk of 8192 rows (3 GiB).
  static constexpr size_t kLogitsChunkBytes = size_t(4) << 30;
  void set_logits_chunk_rows(int64_t rows) { chunk_option_ = rows; }
  // The rows per chunk for a batch of N rows.
  int64_t logits_chunk_rows(int64_t N) const;
  int64_t num_targets() const { return num_targets_; }  // targets counted by the last forward
  // Activation checkpointing, full layer recompute (ds_config activation_checkpointing, see
  // config/ds_config.hpp): the forward keeps each layer's input (the residual stream, fp32
  // [B*T, H] per layer, kept anyway) and one set of per-layer activations, shared by the layers
  // one at a time; the backward recomputes layer l's forward from its input into that set just
  // before layer l's backward (not for the last layer, whose activations the forward left
  // there). The recompute is the forward's own code, so losses and gradients equal those
  // without checkpointing (bit for bit on the CPU backend); every TP rank recomputes the same
  // layers in the same order, so the recompute's TP collectives match. It costs one more
  // forward of every layer but the last. synchronize_boundary: Backend::synchronize() after each
  // layer's forward and recompute (DeepSpeed's synchronize_checkpoint_boundary, for timing).
  // Takes effect at the next forward() (or reserve()); every rank of the TP group must agree.
  void set_activation_checkpointing(bool on, bool synchronize_boundary = false);
  bool activation_checkpointing() const { return ckpt_; }
  // Allocates every buffer a step of micro-batch B x sequence T needs (forward() does it on
  // first use), computing nothing: what memory_plan (train/memory_plan.hpp) counts on the
  // sizing backend. A step then allocates nothing more (gather_logits() excepted).
  void reserve(int B, int T) { ensure_buffers(B, T); }
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
  // Flat buffers on the backend's device, ParamLayout order: grads fp32 (null with bucketed
  // gradients), params fp32 or narrow (narrow_weights(); read and write their values with
  // Backend::values_*).
  bool narrow_weights() const { return storage_.narrow_weights; }
  bool grad_buckets() const { return buckets_ != nullptr; }
  // The device buffers that hold gradients: grads(), or the buckets (for the memory plan).
  std::vector<const float*> grad_buffers() const;
  float* params() { return params_; }
  float* grads() { return grads_; }
  const float* params() const { return params_; }
  const float* grads() const { return grads_; }
  void params_changed();  // after the optimizer wrote params()

  // Host copies of one parameter's local shard (ShardSpec::local_shape order).
  std::vector<float> param_shard(const std::string& name) const;
  // (Not with bucketed gradients: no whole gradient exists; the optimizer sums them.)
  std::vector<float> grad_shard(const std::string& name) const;
  void set_param_shard(const std::string& name, const float* host);

 private:
  enum class EmbedSplit { Replicated, Vocab, Hidden };
  struct Layer {
    size_t ln1 = 0, ln2 = 0;  // norm weight offsets
    size_t lo = 0, hi = 0;    // the layer's parameters: [lo, hi) of the flat buffers
    LinearSite qkv, o, gate_up, down;
    // Attention input (qkv) and output: S over whole local heads, or R (all heads).
    Layout qkv_layout, att_layout;
    int64_t nq = 0, nkv = 0;  // heads this rank computes
    // SwiGLU input [gate | up] and output: S when gate and up are split alike, or R.
    Layout gu_layout, act_layout;
  };
  // What the backward of one layer needs, plus the residual stream. The GEMM inputs are kept:
  // the norm outputs ln1, ln2 (qkv_proj's and gate_up_proj's) and the SwiGLU output act
  // (down_proj's), or, where a site converts its input (tensor parallel), the converted copy
  // (*_xin) instead, the unconverted one passing through ln_ / act_. Buffers that only ever
  // hold narrow values (att_in, att_out, sw_in, ln1, ln2, act where their writer is given
  // Use::Narrow) come from alloc_narrow: on CUDA they cost 2 bytes per element, so keeping ln1,
  // ln2 and act (234 MB per layer at Phi-4-mini's 8192 rows) costs less than the fp32 buffers
  // of att_in, att_out and sw_in saved (402 MB), and the backward recomputes nothing.
  struct LayerActs {
    float *rstd1, *ln1, *qkv_xin, *att_in, *att_out, *lse, *o_xin, *mid, *rstd2, *ln2, *gu_xin,
        *sw_in, *act, *down_xin;
  };
  // LayerActs' buffers one by one, and what one layer needs of each: n elements (0: none,
  // the pointer stays null) and whether only narrow values are written into it (alloc_narrow).
  static constexpr size_t kActBufs = 14;
  static float* LayerActs::*const kActField[kActBufs];
  struct ActBuf {
    size_t n = 0;
    bool narrow = false;
  };
  using ActsSpec = std::array<ActBuf, kActBufs>;
  ActsSpec acts_spec(const Layer& L, size_t N) const;
  // Layer l's activations: its own set, or (checkpointing) the shared one, with the buffers
  // that layer l has none of (e.g. a converted input where its site does not convert) null.
  LayerActs acts(size_t l) const;

  void ensure_buffers(int B, int T);
  void free_buffers();
  float* buf(size_t n);
  float* narrow_buf(size_t n);  // a buffer from alloc_narrow (see LayerActs)
  // forward() up to the final norm (the inputs checked and uploaded, targets counted).
  void forward_layers(const int32_t* inputs, const int32_t* targets, int B, int T);
  // Layer l's forward from its input res_[l] (whose norm ln1 the layer before computed) up to
  // its output res_[l + 1] and the next norm; `recompute`: the checkpointed backward's, which
  // computes ln1 itself and stops before the output (res_[l + 1] holds it already).
  void layer_forward(int l, int64_t B, int64_t T, bool recompute = false);
  void chunk_loss_stats(int64_t r0, int64_t rows, bool reduce);
  float loss_from_stats(const int32_t* targets);  // the mean loss from m, s, z of every row
  int64_t last_chunk() const;                     // first row of the last logits chunk
  void lm_head_backward(int64_t r0, int64_t rows, float grad_scale);
  void backward_layers();
  void layer_backward(int l, int64_t B, int64_t T);
  // The Use of dres when a norm's backward leaves it for layer l's down_proj backward, which
  // reads it next (l < 0: the embedding's backward does).
  Use dres_use(int l) const;
  // out = logits of rows [r0, r0 + rows); Use::Narrow where only the cross-entropy reads them.
  // logits_ (the default) is then the chunk held.
  void chunk_logits(int64_t r0, int64_t rows, Use use, float* out = nullptr);
  // Whether the logits chunk is narrow (the lm_head writes it directly): logits_ comes from
  // alloc_narrow and fp32 logits (gather_logits) need a buffer of their own.
  bool narrow_logits() const { return lm_head_.writes_y(); }
  std::vector<float> slot_to_host(const float* base, const std::string& name) const;

  ModelConfig config_;
  PartitionPlan plan_;
  ParamLayout layout_;
  Backend& be_;
  TpGroup tg_;
  float* params_ = nullptr;
  float* grads_ = nullptr;                // the whole gradient buffer, or null:
  std::unique_ptr<GradBuckets> buckets_;  // the bucketed gradients
  ModelStorage storage_;

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
  int64_t chunk_option_ = 0;  // set_logits_chunk_rows

  // Per-(B, T) buffers.
  int B_ = 0, T_ = 0;
  std::vector<void*> allocs_;
  int32_t *ids_ = nullptr, *tgt_ = nullptr;
  float *cos_ = nullptr, *sin_ = nullptr;
  std::vector<float*> res_;          // residual stream: input of layer l, res_[L] = final hidden
  std::vector<LayerActs> acts_;      // per layer, or one shared set (checkpointing)
  std::vector<ActsSpec> act_specs_;  // per layer
  bool ckpt_ = false, ckpt_sync_ = false;
  bool buffers_ckpt_ = false;  // ckpt_ when the buffers were allocated
  int64_t acts_layer_ = -1;    // checkpointing: the layer whose activations the shared set holds
  // logits_: one chunk [chunk_, logits_width_]; ce_: [max | sumexp | target logit] of all rows,
  // then (vocab-parallel) [this rank's max].
  float *lnf_, *rstdf_, *lm_xin_, *logits_, *ce_;
  int64_t chunk_ = 0;        // rows per logits chunk
  int64_t held_chunk_ = -1;  // first row of the chunk whose forward logits logits_ holds
  float *sc_y_, *sc_out_, *sc_dy_, *sc_dx_, *sc_d1_, *sc_d2_, *d_ln_, *dres_;
  float *ln_, *act_;  // a norm's and the SwiGLU's output on their way to a site that converts it
  RopeTable rope_;
  GradsReadyFn grads_ready_;
  GradsReleaseFn grads_release_;
  bool narrow_grads_ = false;

  // zero_grad() pending: the gradients are zero but the buffer is not (yet). written_[i]: slot
  // i of the layout holds its gradient from the backward in progress.
  bool grads_zero_pending_ = false;
  std::vector<char> written_;
  // For an op about to write the gradient of the slot at `offset` (covering `numel` of its
  // elements when it can overwrite, 0 when it can only add): whether it must add into what is
  // there. An adding op finds the slot zeroed first when it is the slot's first writer.
  bool grad_accumulates(size_t offset, size_t numel);
  // An op that can only add (a norm's weight gradient, the embedding's scatter) is about to
  // write the slot at `offset`: zeroed first when it is the slot's first writer.
  void grad_will_add(size_t offset) { grad_accumulates(offset, 0); }
  // The slots in [lo, hi) that no op wrote yet are zeroed: their gradients are final.
  void settle_grads(size_t lo, size_t hi);
  // The flat layout's groups: [0, first_layer_off()) the embedding (and a tied lm_head), the
  // layers, [tail_off(), total) the final norm and an untied lm_head.
  size_t first_layer_off() const { return layers_.empty() ? norm_off_ : layers_.front().lo; }
  size_t tail_off() const { return layers_.empty() ? norm_off_ : layers_.back().hi; }
  // Where the gradient of flat element `offset` is written: grads_ + offset, or in its group's
  // bucket, which open_grads(offset) gave it in this backward.
  float* grad(size_t offset) const;
  void open_grads(size_t offset);
  // Start of a backward: with buckets, every gradient starts from zero (lazily, as zero_grad).
  void begin_backward();
  // [offset, offset + count) is final: unwritten slots zeroed, then reported.
  void grads_final(size_t offset, size_t count);

  // State of the last forward.
  bool have_forward_ = false, have_targets_ = false, logits_valid_ = false;
  int64_t num_targets_ = 0;
};

}  // namespace autotp
