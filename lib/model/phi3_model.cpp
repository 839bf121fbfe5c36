#include "model/phi3_model.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "model/param_init.hpp"

namespace autotp {

namespace {

// Blocks of a vocab-sharded dim: rank r's pieces, in local order.
std::vector<VocabBlock> blocks_of(const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  std::vector<VocabBlock> b;
  int64_t col = 0;
  for (auto [lo, hi] : ranges) {
    b.push_back({col, lo, hi - lo});
    col += hi - lo;
  }
  return b;
}

// The gradient of a site's output is read by the backward's GEMMs alone, once, unless the site
// converts it first.
Use grad_gemm_use(const LinearSite& s) {
  return s.converts_output() ? Use::Any : Use::Gemm;
}
// The same for an input that other narrow readers share (the attention output, which the
// attention backward reads too), and for an output gradient (dqkv, which RoPE's backward
// rotates in place first).
Use narrow_use(const LinearSite& s) {
  return s.converts_input() ? Use::Any : Use::Narrow;
}
Use grad_narrow_use(const LinearSite& s) {
  return s.converts_output() ? Use::Any : Use::Narrow;
}

// A GEMM input the layer keeps for its backward (LayerActs) is written narrow into its own
// buffer; one its site converts goes through the fp32 scratch (ln_, act_).
float* kept_or(float* kept, float* scratch) {
  return kept ? kept : scratch;
}
Use kept_use(const float* kept) {
  return kept ? Use::Narrow : Use::Any;
}

std::string layer_name(int64_t l, const char* what) {
  return "model.layers." + std::to_string(l) + "." + what;
}

}  // namespace

Phi3Model::Phi3Model(const ModelConfig& config, const PartitionPlan& plan, int tp_rank,
                     Comm& tp_comm, Backend& backend, ModelStorage storage)
    : config_(config),
      plan_(plan),
      layout_(ParamLayout::from_plan(plan_)),
      be_(backend),
      tg_(backend, tp_comm),
      storage_(storage) {
  const int64_t tp = tg_.size();
  check(tp_rank == tp_comm.rank(), "model: tp_rank ", tp_rank,
        " differs from the TP communicator's rank ", tp_comm.rank());
  check(plan_.tp == tp, "model: the partition plan is for tp = ", plan_.tp,
        " but the TP group has ", tp, " ranks");
  auto descs = config_.parameters();
  check(plan_.params.size() == descs.size(), "model: the partition plan has ", plan_.params.size(),
        " parameters, the model config ", descs.size(),
        " (was the plan built for another config?)");
  for (size_t i = 0; i < descs.size(); ++i) {
    const ShardSpec& s = plan_.params[i];
    check(s.name == descs[i].name && s.shape == descs[i].shape, "model: plan entry ", i, " is '",
          s.name, "', expected '", descs[i].name, "' with the config's shape");
    check(s.shape.size() == 2 || s.replicated(), "model: ", s.name,
          " is a norm weight and must be replicated over TP, but the plan (", s.rule,
          ") splits it; add a skip rule for it");
    if (s.replicated()) continue;
    check(s.tp == tp && (s.split_dim == 0 || s.split_dim == 1), "model: plan entry ", s.name,
          " has split_dim ", s.split_dim, " and tp ", s.tp, "; expected dim 0 or 1 and tp ", tp);
    int64_t sum = 0;
    for (int64_t part : s.parts) {
      check(part > 0 && part % tp == 0, "model: plan entry ", s.name, " (", s.rule,
            ") has a sub-parameter of ", part, " rows/columns, not divisible by tp ", tp);
      sum += part;
    }
    check(sum == s.shape[size_t(s.split_dim)], "model: plan entry ", s.name, " (", s.rule,
          ") has sub-parameters summing to ", sum, ", not to its dim ", s.split_dim, " (",
          s.shape[size_t(s.split_dim)], ")");
  }

  H_ = config_.hidden_size;
  hd_ = config_.head_dim;
  rd_ = config_.rotary_dim();
  I_ = config_.intermediate_size;
  V_ = config_.vocab_size;
  const int64_t nh = config_.num_attention_heads, nkv = config_.num_key_value_heads;

  // Embedding: vocab rows (our vocab_parallel), hidden columns (DeepSpeed), or replicated.
  const ParamSlot& emb = layout_.at("model.embed_tokens.weight");
  embed_off_ = emb.offset;
  embed_dim_ = H_;
  embed_blocks_ = {{0, 0, V_}};
  if (tp > 1 && !emb.spec->replicated()) {
    if (emb.spec->split_dim == 0) {
      embed_split_ = EmbedSplit::Vocab;
      embed_blocks_ = blocks_of(emb.spec->ranges(tp_rank));
    } else {
      embed_split_ = EmbedSplit::Hidden;
      embed_layout_ = Layout::S(emb.spec->parts);
      embed_dim_ = H_ / tp;
    }
  }

  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    Layer L;
    L.ln1 = layout_.at(layer_name(l, "input_layernorm.weight")).offset;
    L.ln2 = layout_.at(layer_name(l, "post_attention_layernorm.weight")).offset;
    const ParamSlot& down = layout_.at(layer_name(l, "mlp.down_proj.weight"));
    L.lo = L.ln1;
    L.hi = down.offset + down.numel;
    const ParamSlot& qkv = layout_.at(layer_name(l, "self_attn.qkv_proj.weight"));
    const ParamSlot& gu = layout_.at(layer_name(l, "mlp.gate_up_proj.weight"));
    // Attention runs on local heads when qkv is column-split into whole Q, K, V heads per
    // rank; any other qkv split is gathered and every rank runs all heads.
    LinearSite probe = LinearSite::make(qkv, tp, Layout::R(), Layout::R());
    Layout qkv_heads = Layout::S({config_.q_rows(), config_.kv_rows(), config_.kv_rows()});
    bool local_heads = tp > 1 && probe.out_layout == qkv_heads && nh % tp == 0 && nkv % tp == 0;
    L.qkv_layout = local_heads ? qkv_heads : Layout::R();
    L.att_layout = local_heads ? Layout::S({config_.q_rows()}) : Layout::R();
    L.nq = local_heads ? nh / tp : nh;
    L.nkv = local_heads ? nkv / tp : nkv;
    // SwiGLU pairs gate i with up i: it runs on shards only when both halves are split alike.
    probe = LinearSite::make(gu, tp, Layout::R(), Layout::R());
    bool local_mlp = tp > 1 && probe.out_layout == Layout::S({I_, I_});
    L.gu_layout = local_mlp ? Layout::S({I_, I_}) : Layout::R();
    L.act_layout = local_mlp ? Layout::S({I_}) : Layout::R();

    L.qkv = LinearSite::make(qkv, tp, Layout::R(), L.qkv_layout);
    L.o = LinearSite::make(layout_.at(layer_name(l, "self_attn.o_proj.weight")), tp, L.att_layout,
                           Layout::R());
    L.gate_up = LinearSite::make(gu, tp, Layout::R(), L.gu_layout);
    L.down = LinearSite::make(layout_.at(layer_name(l, "mlp.down_proj.weight")), tp, L.act_layout,
                              Layout::R());
    layers_.push_back(L);
  }
  norm_off_ = layout_.at("model.norm.weight").offset;

  // lm_head (or the tied embedding, used with the embedding's split): column-split gives
  // vocab-parallel logits and cross-entropy; row-split or replicated give full logits.
  const ParamSlot& head =
      layout_.at(config_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  LinearSite probe = LinearSite::make(head, tp, Layout::R(), Layout::R());
  lm_head_ = LinearSite::make(head, tp, Layout::R(), probe.out_layout);
  vocab_parallel_ce_ = lm_head_.dst.sharded;
  logits_width_ = lm_head_.out_local(tp);
  logit_blocks_ = vocab_parallel_ce_ ? blocks_of(lm_head_.dst.ranges(tp_rank, tp))
                                     : std::vector<VocabBlock>{{0, 0, V_}};

  params_ = storage_.narrow_weights ? be_.alloc_narrow(layout_.total) : be_.alloc(layout_.total);
  // Bucketed gradients: the groups in the order the backward finishes them (backward_layers):
  // the tail, the layers from the last, the embedding ([0, first layer)), which the tied
  // lm_head's backward writes from the start.
  std::vector<GradBuckets::Group> groups;
  groups.push_back({tail_off(), layout_.total, false});
  for (size_t l = layers_.size(); l-- > 0;) groups.push_back({layers_[l].lo, layers_[l].hi, false});
  groups.push_back({0, first_layer_off(), config_.tie_word_embeddings});
  const size_t dp = size_t(std::max(storage_.grad_bucket_dp, 1));
  const size_t shard = (layout_.total + dp - 1) / dp;  // the optimizer's sum of its shard
  if (dp > 1 && GradBuckets::numel(groups) + shard < layout_.total)
    buckets_ = std::make_unique<GradBuckets>(be_, std::move(groups));
  else
    grads_ = be_.alloc(layout_.total);
}

Phi3Model::~Phi3Model() {
  free_buffers();
  be_.free_bytes(params_);
  if (grads_) be_.free_bytes(grads_);
}

std::vector<const float*> Phi3Model::grad_buffers() const {
  if (buckets_) return buckets_->buffers();
  return {grads_};
}

// ---------------------------------------------------------------- parameters

void Phi3Model::init_random(uint64_t seed) {
  double std = 0.02;
  if (config_.raw.is_object() && config_.raw.contains("initializer_range") &&
      config_.raw["initializer_range"].is_number())
    std = config_.raw["initializer_range"].get<double>();
  for (auto& slot : layout_.slots) {
    std::vector<float> host(slot.numel);
    if (slot.spec->shape.size() == 1) {
      std::fill(host.begin(), host.end(), 1.0f);  // RMSNorm weights
    } else {
      bool embed = slot.name == "model.embed_tokens.weight";
      init_normal_shard(*slot.spec, tg_.rank(), seed, std, embed ? config_.pad_token_id : -1,
                        host.data());
    }
    be_.values_from_host(host.data(), params_ + slot.offset, slot.numel);
  }
  params_changed();
}

void Phi3Model::params_changed() {
  be_.params_changed(params_, layout_.total);
}

void Phi3Model::zero_grad() {
  grads_zero_pending_ = true;
  written_.assign(layout_.slots.size(), 0);
}

bool Phi3Model::grad_accumulates(size_t offset, size_t numel) {
  if (!grads_zero_pending_) return true;
  const auto it = std::lower_bound(layout_.slots.begin(), layout_.slots.end(), offset,
                                   [](const ParamSlot& s, size_t o) { return s.offset < o; });
  check(it != layout_.slots.end() && it->offset == offset, "model: no parameter starts at ", offset,
        " of the gradient buffer");
  char& w = written_[size_t(it - layout_.slots.begin())];
  if (w) return true;
  w = 1;
  if (numel == it->numel) return false;
  be_.fill_zero(grad(offset), it->numel * sizeof(float));
  return true;
}

void Phi3Model::settle_grads(size_t lo, size_t hi) {
  if (!grads_zero_pending_) return;
  for (size_t i = 0; i < layout_.slots.size(); ++i) {
    const ParamSlot& s = layout_.slots[i];
    if (!written_[i] && s.offset >= lo && s.offset + s.numel <= hi) {
      be_.fill_zero(grad(s.offset), s.numel * sizeof(float));
      written_[i] = 1;
    }
  }
}

float* Phi3Model::grad(size_t offset) const {
  return buckets_ ? buckets_->at(offset) : grads_ + offset;
}

void Phi3Model::open_grads(size_t offset) {
  if (!buckets_) return;
  const size_t g = buckets_->group_of(offset);
  if (buckets_->opened(g)) return;
  // Without a receiver, a bucket's gradients would be overwritten unread.
  check(grads_ready_ && grads_release_,
        "model: bucketed gradients need set_grads_ready and set_grads_release (the optimizer "
        "that sums them; train/grad_link.hpp)");
  buckets_->open(g, grads_release_);
}

void Phi3Model::begin_backward() {
  if (!buckets_) return;
  buckets_->new_pass();
  zero_grad();
}

void Phi3Model::grads_final(size_t offset, size_t count) {
  if (count == 0) return;
  open_grads(offset);  // a group no op wrote (no targets) is reported as zeros
  settle_grads(offset, offset + count);
  if (grads_ready_) grads_ready_(offset, count, grad(offset));
}

std::vector<float> Phi3Model::slot_to_host(const float* base, const std::string& name) const {
  const ParamSlot& s = layout_.at(name);
  std::vector<float> out(s.numel);
  be_.values_to_host(base + s.offset, out.data(), s.numel);
  return out;
}

std::vector<float> Phi3Model::param_shard(const std::string& name) const {
  return slot_to_host(params_, name);
}

std::vector<float> Phi3Model::grad_shard(const std::string& name) const {
  check(!buckets_, "model: grad_shard('", name,
        "'): the gradients are bucketed (ZeRO-2 over DP), each group reduced to its owners as "
        "the backward finishes it; no whole gradient exists");
  if (grads_zero_pending_) return std::vector<float>(layout_.at(name).numel, 0.0f);
  const ParamSlot& s = layout_.at(name);
  be_.make_fp32(grads_ + s.offset, s.numel);  // a narrow weight gradient
  return slot_to_host(grads_, name);
}

void Phi3Model::set_param_shard(const std::string& name, const float* host) {
  const ParamSlot& s = layout_.at(name);
  be_.values_from_host(host, params_ + s.offset, s.numel);
}

std::string Phi3Model::describe() const {
  const char* split_name[] = {"replicated", "column-parallel", "row-parallel"};
  std::string out = "embedding: ";
  if (embed_split_ == EmbedSplit::Vocab) {
    out += "vocab-parallel (rows";
    for (auto& b : embed_blocks_)
      out += " " + std::to_string(b.begin) + "-" + std::to_string(b.begin + b.len - 1);
    out += " of " + std::to_string(V_) + ")";
  } else {
    out += embed_split_ == EmbedSplit::Hidden ? "split along hidden, all-gathered" : "replicated";
  }
  out += "\n";
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    out += "layer " + std::to_string(l) + ": attention on ";
    out += L.qkv_layout.sharded
               ? "local heads (q " + std::to_string(L.nq) + "/" +
                     std::to_string(config_.num_attention_heads) + ", kv " + std::to_string(L.nkv) +
                     "/" + std::to_string(config_.num_key_value_heads) + ")"
               : std::string("all heads");
    out += L.gu_layout.sharded ? ", MLP on local columns" : ", MLP on all columns";
    out += "; qkv_proj " + std::string(split_name[L.qkv.split + 1]) + ", o_proj " +
           split_name[L.o.split + 1] + ", gate_up_proj " + split_name[L.gate_up.split + 1] +
           ", down_proj " + split_name[L.down.split + 1] + "\n";
  }
  out += "lm_head" + std::string(config_.tie_word_embeddings ? " (tied): " : ": ") +
         split_name[lm_head_.split + 1] +
         (vocab_parallel_ce_ ? ", vocab-parallel cross-entropy" : ", full cross-entropy") + "\n";
  return out;
}

// ---------------------------------------------------------------- buffers

float* Phi3Model::buf(size_t n) {
  float* p = be_.alloc(n);
  allocs_.push_back(p);
  return p;
}

float* Phi3Model::narrow_buf(size_t n) {
  float* p = be_.alloc_narrow(n);
  allocs_.push_back(p);
  return p;
}

void Phi3Model::free_buffers() {
  for (void* p : allocs_) be_.free_bytes(p);
  allocs_.clear();
  B_ = T_ = 0;
}

int64_t Phi3Model::logits_chunk_rows(int64_t N) const {
  N = std::max(N, int64_t(1));
  if (chunk_option_ > 0) return std::min(chunk_option_, N);
  // The fewest chunks whose logits fit the budget, cut into equal rows (each recomputed chunk
  // costs a GEMM pass and a pass over the weight gradient, so fewer is faster).
  const size_t per_logit = narrow_logits() ? be_.narrow_bytes() : sizeof(float);
  const int64_t fit = std::max(int64_t(1), int64_t(kLogitsChunkBytes / per_logit) / logits_width_);
  const int64_t chunks = (N + fit - 1) / fit;
  return (N + chunks - 1) / chunks;
}

float* Phi3Model::LayerActs::*const Phi3Model::kActField[kActBufs] = {
    &LayerActs::rstd1,   &LayerActs::ln1,     &LayerActs::qkv_xin, &LayerActs::att_in,
    &LayerActs::att_out, &LayerActs::lse,     &LayerActs::o_xin,   &LayerActs::mid,
    &LayerActs::rstd2,   &LayerActs::ln2,     &LayerActs::gu_xin,  &LayerActs::sw_in,
    &LayerActs::act,     &LayerActs::down_xin};

// In kActField's order. Each buffer narrow where its writers are given Use::Narrow
// (layer_forward); a GEMM input the layer keeps is its own (narrow) unless its site converts it,
// when the converted copy (xin, fp32) is kept instead.
Phi3Model::ActsSpec Phi3Model::acts_spec(const Layer& L, size_t N) const {
  const int64_t tp = tg_.size();
  const int64_t qkv_full = config_.q_rows() + 2 * config_.kv_rows();
  auto fp32 = [](size_t n) { return ActBuf{n, false}; };
  auto keep = [](bool narrow, size_t n) { return ActBuf{n, narrow}; };
  auto kept_input = [&](const LinearSite& s, size_t n) {
    return s.converts_input() ? ActBuf{} : ActBuf{n, true};
  };
  auto xin = [&](const LinearSite& s) {
    return s.converts_input() ? fp32(N * size_t(s.in_local(tp))) : ActBuf{};
  };
  return {fp32(N),
          kept_input(L.qkv, N * H_),
          xin(L.qkv),
          keep(L.qkv.writes_y(), N * L.qkv_layout.local_width(qkv_full, tp)),
          keep(narrow_use(L.o) == Use::Narrow, N * L.nq * hd_),
          fp32(N * L.nq),
          xin(L.o),
          fp32(N * H_),
          fp32(N),
          kept_input(L.gate_up, N * H_),
          xin(L.gate_up),
          keep(L.gate_up.writes_y(), N * L.gu_layout.local_width(2 * I_, tp)),
          kept_input(L.down, N * L.act_layout.local_width(I_, tp)),
          xin(L.down)};
}

Phi3Model::LayerActs Phi3Model::acts(size_t l) const {
  if (!buffers_ckpt_) return acts_[l];
  LayerActs a = acts_[0];
  for (size_t k = 0; k < kActBufs; ++k)
    if (!act_specs_[l][k].n) a.*kActField[k] = nullptr;
  return a;
}

void Phi3Model::set_activation_checkpointing(bool on, bool synchronize_boundary) {
  ckpt_ = on;
  ckpt_sync_ = on && synchronize_boundary;
}

void Phi3Model::ensure_buffers(int B, int T) {
  const int64_t chunk = logits_chunk_rows(int64_t(B) * T);
  if (B == B_ && T == T_ && chunk == chunk_ && ckpt_ == buffers_ckpt_) return;
  free_buffers();
  const int64_t tp = tg_.size();
  const size_t N = size_t(B) * size_t(T);
  const int64_t qkv_full = config_.q_rows() + 2 * config_.kv_rows();
  auto xin = [&](const LinearSite& s) {
    return s.converts_input() ? buf(N * s.in_local(tp)) : nullptr;
  };
  // Each scratch buffer is as large as its largest use and no larger (at Phi-4-mini's 8192
  // rows every column of width is 32 KiB): the layout conversions' buffers (y, dy, dx) exist
  // only where some site converts.
  size_t need_y = 0, need_dy = 0, need_dx = 0, need_d1 = 0, need_d2 = 0, need_act = 0;
  bool need_ln = false, branch_out_narrow = true;
  auto grow = [](size_t& need, int64_t rows, int64_t cols) {
    need = std::max(need, size_t(rows) * size_t(cols));
  };
  auto site = [&](const LinearSite& s, int64_t rows) {
    if (s.converts_output())
      grow(need_y, rows, s.out_local(tp)), grow(need_dy, rows, s.out_local(tp));
    if (s.converts_input()) grow(need_dx, rows, s.in_local(tp));
  };
  if (embed_split_ == EmbedSplit::Hidden) grow(need_y, N, embed_dim_), grow(need_d1, N, embed_dim_);
  for (const Layer& L : layers_) {
    for (const LinearSite* s : {&L.qkv, &L.o, &L.gate_up, &L.down}) site(*s, N);
    grow(need_d1, N, L.act_layout.local_width(I_, tp));     // down's input gradient
    grow(need_d1, N, L.nq * hd_);                           // o_proj's input gradient
    grow(need_d2, N, L.gu_layout.local_width(2 * I_, tp));  // SwiGLU's input gradient
    grow(need_d2, N, L.qkv_layout.local_width(qkv_full, tp));
    if (L.down.converts_input()) grow(need_act, N, L.act_layout.local_width(I_, tp));
    need_ln |= L.qkv.converts_input() || L.gate_up.converts_input();
    for (const LinearSite* s : {&L.o, &L.down}) branch_out_narrow &= s->writes_y();
  }
  site(lm_head_, chunk);

  ids_ = static_cast<int32_t*>(be_.alloc_bytes(N * sizeof(int32_t)));
  allocs_.push_back(ids_);
  tgt_ = static_cast<int32_t*>(be_.alloc_bytes(N * sizeof(int32_t)));
  allocs_.push_back(tgt_);
  rope_ = RopeTable::build(config_, T);
  cos_ = buf(rope_.cos.size());
  sin_ = buf(rope_.sin.size());
  be_.from_host(rope_.cos.data(), cos_, rope_.cos.size() * sizeof(float));
  be_.from_host(rope_.sin.data(), sin_, rope_.sin.size() * sizeof(float));

  // The residual stream: every layer's input, kept with or without checkpointing.
  res_.assign(layers_.size() + 1, nullptr);
  for (auto& r : res_) r = buf(N * H_);
  auto keep = [&](bool narrow, size_t n) { return narrow ? narrow_buf(n) : buf(n); };
  act_specs_.clear();
  for (const Layer& L : layers_) act_specs_.push_back(acts_spec(L, N));
  // Checkpointing: one set for all layers, each buffer as large as its largest use, narrow
  // only where every layer writes it narrow (an fp32 buffer holds narrow values too).
  std::vector<ActsSpec> sets = act_specs_;
  if (ckpt_ && !sets.empty()) {
    ActsSpec shared = sets[0];
    for (const ActsSpec& sp : sets)
      for (size_t k = 0; k < kActBufs; ++k) {
        if (!sp[k].n) continue;
        shared[k].narrow = shared[k].n ? shared[k].narrow && sp[k].narrow : sp[k].narrow;
        shared[k].n = std::max(shared[k].n, sp[k].n);
      }
    sets.assign(1, shared);
  }
  acts_.assign(sets.size(), LayerActs{});
  for (size_t i = 0; i < sets.size(); ++i)
    for (size_t k = 0; k < kActBufs; ++k)
      if (sets[i][k].n) acts_[i].*kActField[k] = keep(sets[i][k].narrow, sets[i][k].n);
  acts_layer_ = -1;
  buffers_ckpt_ = ckpt_;
  lnf_ = buf(N * H_);
  rstdf_ = buf(N);
  lm_xin_ = xin(lm_head_);
  logits_ = keep(narrow_logits(), size_t(chunk * logits_width_));
  ce_ = buf((vocab_parallel_ce_ ? 4 : 3) * N);
  auto maybe = [&](size_t n) { return n ? buf(n) : nullptr; };
  sc_y_ = maybe(need_y);
  sc_dy_ = maybe(need_dy);
  sc_dx_ = maybe(need_dx);
  sc_out_ = keep(branch_out_narrow, N * H_);
  sc_d1_ = maybe(need_d1);
  sc_d2_ = maybe(need_d2);
  ln_ = need_ln ? buf(N * H_) : nullptr;
  act_ = maybe(need_act);
  d_ln_ = buf(N * H_);
  dres_ = buf(N * H_);
  // The layout conversions' gather scratch (TpGroup's), now rather than at the first step.
  auto reserve_site = [&](const LinearSite& s, int64_t rows) {
    tg_.reserve(s.src, s.in_layout, rows, s.in);
    tg_.reserve(s.out_layout, s.dst, rows, s.out);
  };
  if (embed_split_ == EmbedSplit::Hidden) tg_.reserve(embed_layout_, Layout::R(), N, H_);
  for (const Layer& L : layers_)
    for (const LinearSite* s : {&L.qkv, &L.o, &L.gate_up, &L.down}) reserve_site(*s, N);
  reserve_site(lm_head_, chunk);
  B_ = B;
  T_ = T;
  chunk_ = chunk;
}

// ---------------------------------------------------------------- forward

float Phi3Model::forward(const int32_t* inputs, const int32_t* targets, int B, int T) {
  forward_layers(inputs, targets, B, T);
  if (!targets) return 0.0f;  // gather_logits() computes the logits
  const int64_t N = int64_t(B) * T;
  for (int64_t r0 = 0; r0 < N; r0 += chunk_) {
    const int64_t rows = std::min(chunk_, N - r0);
    chunk_logits(r0, rows, Use::Narrow);
    chunk_loss_stats(r0, rows, false);
  }
  if (vocab_parallel_ce_) tg_.all_reduce_sum(ce_ + N, size_t(2 * N));  // s and z together
  return loss_from_stats(targets);
}

float Phi3Model::forward_backward(const int32_t* inputs, const int32_t* targets, int B, int T,
                                  float grad_scale) {
  check(targets != nullptr, "model: forward_backward() needs targets");
  forward_layers(inputs, targets, B, T);
  begin_backward();
  const int64_t N = int64_t(B) * T;
  // Chunks in backward()'s order, so that dW accumulates as it does there.
  for (int64_t r0 = last_chunk(); r0 >= 0; r0 -= chunk_) {
    const int64_t rows = std::min(chunk_, N - r0);
    chunk_logits(r0, rows, Use::Narrow);
    chunk_loss_stats(r0, rows, true);
    if (num_targets_) lm_head_backward(r0, rows, grad_scale);
  }
  const float loss = loss_from_stats(targets);
  have_forward_ = false;
  logits_valid_ = false;
  backward_layers();
  return loss;
}

void Phi3Model::forward_layers(const int32_t* inputs, const int32_t* targets, int B, int T) {
  check(B > 0 && T > 0, "model forward: batch ", B, " x ", T, " is empty");
  check(T <= config_.max_position_embeddings, "model forward: sequence length ", T,
        " exceeds max_position_embeddings (", config_.max_position_embeddings, ")");
  const int64_t N = int64_t(B) * T;
  for (int64_t i = 0; i < N; ++i)
    check(inputs[i] >= 0 && inputs[i] < V_, "model forward: input token ", inputs[i],
          " at position ", i, " is outside the vocabulary [0, ", V_, ")");
  num_targets_ = 0;
  if (targets) {
    for (int64_t i = 0; i < N; ++i) {
      check(targets[i] == kIgnoreIndex || (targets[i] >= 0 && targets[i] < V_),
            "model forward: target ", targets[i], " at position ", i,
            " is neither a token id in [0, ", V_, ") nor ", kIgnoreIndex);
      num_targets_ += targets[i] != kIgnoreIndex;
    }
  }
  ensure_buffers(B, T);
  be_.from_host(inputs, ids_, size_t(N) * sizeof(int32_t));
  if (targets) be_.from_host(targets, tgt_, size_t(N) * sizeof(int32_t));

  // Embedding -> residual stream (R).
  const float* E = params_ + embed_off_;
  float* x0 = res_[0];
  if (embed_split_ == EmbedSplit::Hidden) {
    // Each rank looks up its hidden columns (S), then all-gathers them into R.
    be_.fill_zero(sc_y_, size_t(N * embed_dim_) * sizeof(float));
    be_.embedding_forward(ids_, N, E, embed_dim_, embed_blocks_, sc_y_);
    tg_.gather(embed_layout_, sc_y_, N, H_, x0);
  } else {
    // Vocab-parallel: rows this rank lacks contribute 0 -> partial sums -> all-reduce.
    be_.fill_zero(x0, size_t(N * H_) * sizeof(float));
    be_.embedding_forward(ids_, N, E, embed_dim_, embed_blocks_, x0);
    if (embed_split_ == EmbedSplit::Vocab) tg_.all_reduce_sum(x0, size_t(N * H_));
  }

  // Each layer ends with the next norm (the next layer's ln1, or the final norm), fused with
  // its residual add; only the first norm stands alone.
  const float eps = float(config_.rms_norm_eps);
  if (layers_.empty()) {
    be_.rmsnorm_forward(res_.back(), params_ + norm_off_, N, H_, eps, lnf_, rstdf_, Use::Any);
  } else {
    const LayerActs a = acts(0);
    be_.rmsnorm_forward(x0, params_ + layers_[0].ln1, N, H_, eps, kept_or(a.ln1, ln_), a.rstd1,
                        kept_use(a.ln1));
  }
  for (size_t l = 0; l < layers_.size(); ++l) layer_forward(int(l), B, T);
  acts_layer_ = int64_t(layers_.size()) - 1;  // the last layer's activations are in place

  have_forward_ = true;
  logits_valid_ = true;
  have_targets_ = targets != nullptr;
  held_chunk_ = -1;
}

// Cross-entropy, vocab-parallel when the logits are sharded (never gathered), one chunk of
// rows at a time (only m and s of every row are kept for the backward):
//   m = max over all ranks' columns;  s = sum over all columns of exp(l - m);
//   z = the target's logit (from the one rank holding it);  loss_n = log(s) + m - z.
// Each rank reads its logits once for its own max m_r and sum s_r; with vocab parallelism
// m = max_r m_r, and s = sum_r s_r exp(m_r - m) (ce_rescale, then an all-reduce). s and z are
// summed over TP per chunk when `reduce`, else by the caller for all rows at once.
void Phi3Model::chunk_loss_stats(int64_t r0, int64_t rows, bool reduce) {
  const int64_t N = int64_t(B_) * T_;
  float *m = ce_ + r0, *s = ce_ + N + r0, *z = ce_ + 2 * N + r0;
  float* m_rank = vocab_parallel_ce_ ? ce_ + 3 * N + r0 : m;  // this rank's max
  be_.ce_stats(logits_, rows, logits_width_, tgt_ + r0, logit_blocks_, m_rank, s, z);
  if (!vocab_parallel_ce_) return;
  be_.copy(m_rank, m, size_t(rows) * sizeof(float));
  tg_.all_reduce_max(m, size_t(rows));
  be_.ce_rescale(m_rank, m, rows, s);
  if (reduce) {
    tg_.all_reduce_sum(s, size_t(rows));
    tg_.all_reduce_sum(z, size_t(rows));
  }
}

float Phi3Model::loss_from_stats(const int32_t* targets) {
  const int64_t N = int64_t(B_) * T_;
  std::vector<float> h(size_t(3 * N));
  be_.to_host(ce_, h.data(), h.size() * sizeof(float));
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i)
    if (targets[i] != kIgnoreIndex) total += std::log(double(h[N + i])) + h[i] - h[2 * N + i];
  return num_targets_ ? float(total / double(num_targets_)) : 0.0f;
}

int64_t Phi3Model::last_chunk() const {
  return (int64_t(B_) * T_ - 1) / chunk_ * chunk_;
}

void Phi3Model::layer_forward(int l, int64_t B, int64_t T, bool recompute) {
  const Layer& L = layers_[size_t(l)];
  const LayerActs a = acts(size_t(l));
  const int64_t N = B * T, tp = tg_.size();
  const int64_t qkv_local = L.qkv_layout.local_width(config_.q_rows() + 2 * config_.kv_rows(), tp);
  const float eps = float(config_.rms_norm_eps);
  const float* x = res_[size_t(l)];
  float* P = params_;
  // The forward had ln1 from the norm fused into the layer before's residual add (its
  // add_rmsnorm_forward: the sum res_[l], then the norm of it, as here).
  if (recompute)
    be_.rmsnorm_forward(x, P + L.ln1, N, H_, eps, kept_or(a.ln1, ln_), a.rstd1, kept_use(a.ln1));

  // h = x + o_proj(attn(rope(qkv_proj(rmsnorm(x))))); rmsnorm(x) is in ln1 already.
  // qkv is read by RoPE (in place) and the attention alone: kept narrow.
  linear_forward(be_, tg_, L.qkv, P + L.qkv.w_offset, kept_or(a.ln1, ln_), N, a.qkv_xin, sc_y_,
                 a.att_in, Use::Narrow);
  // RoPE on the q and k heads, which lie side by side at the start of each row.
  be_.rope_forward(a.att_in, N, T, qkv_local, L.nq + L.nkv, hd_, rd_, cos_, sin_);
  // out is read by o_proj's GEMMs and the attention backward alone, unless o_proj converts it.
  be_.attention_forward(a.att_in, B, T, L.nq, L.nkv, hd_, a.att_out, a.lse, narrow_use(L.o));
  // Each branch's output is read by the residual add alone: narrow, as autocast's bf16.
  linear_forward(be_, tg_, L.o, P + L.o.w_offset, a.att_out, N, a.o_xin, sc_y_, sc_out_,
                 Use::Narrow);
  // mid = x + attn, and ln2 = rmsnorm(mid) for gate_up_proj
  be_.add_rmsnorm_forward(sc_out_, x, a.mid, P + L.ln2, N, H_, eps, kept_or(a.ln2, ln_), a.rstd2,
                          kept_use(a.ln2));

  // out = h + down_proj(up * silu(gate)),  [gate | up] = gate_up_proj(rmsnorm(h))
  // [gate | up] is read by the SwiGLU alone (here and twice in the backward): kept narrow.
  linear_forward(be_, tg_, L.gate_up, P + L.gate_up.w_offset, kept_or(a.ln2, ln_), N, a.gu_xin,
                 sc_y_, a.sw_in, Use::Narrow);
  be_.swiglu_forward(a.sw_in, N, L.act_layout.local_width(I_, tp), kept_or(a.act, act_),
                     kept_use(a.act));
  linear_forward(be_, tg_, L.down, P + L.down.w_offset, kept_or(a.act, act_), N, a.down_xin, sc_y_,
                 sc_out_, Use::Narrow);
  if (ckpt_sync_) be_.synchronize();
  if (recompute) return;  // res_[l + 1] and the next norm are the forward's still
  // out = mid + mlp, and the norm of `out` that comes next: layer l + 1's ln1 (read by its
  // qkv_proj only), or the final norm (read by every logits chunk, and again in the backward).
  const bool last = size_t(l) + 1 == layers_.size();
  const size_t next_w = last ? norm_off_ : layers_[size_t(l) + 1].ln1;
  const LayerActs next = last ? LayerActs{} : acts(size_t(l) + 1);
  float* next_ln = last ? lnf_ : kept_or(next.ln1, ln_);
  float* next_rstd = last ? rstdf_ : next.rstd1;
  const Use next_use = last ? Use::Any : kept_use(next.ln1);
  be_.add_rmsnorm_forward(sc_out_, a.mid, res_[size_t(l) + 1], P + next_w, N, H_, eps, next_ln,
                          next_rstd, next_use);
}

void Phi3Model::chunk_logits(int64_t r0, int64_t rows, Use use, float* out) {
  float* xin = lm_head_.converts_input() ? lm_xin_ + r0 * lm_head_.in_local(tg_.size()) : nullptr;
  linear_forward(be_, tg_, lm_head_, params_ + lm_head_.w_offset, lnf_ + r0 * H_, rows, xin, sc_y_,
                 out ? out : logits_, use);
  if (!out || out == logits_) held_chunk_ = r0;
}

std::vector<float> Phi3Model::gather_logits() {
  check(logits_valid_, "model: gather_logits() needs a forward() not yet followed by backward()");
  const int64_t N = int64_t(B_) * T_;
  std::vector<float> out(size_t(N * V_));
  // In fp32 (the forward's are narrow): a narrow logits_ has no room for them.
  float* local = narrow_logits() ? be_.alloc(size_t(chunk_ * logits_width_)) : logits_;
  float* full = vocab_parallel_ce_ ? be_.alloc(size_t(chunk_ * V_)) : local;
  for (int64_t r0 = 0; r0 < N; r0 += chunk_) {
    const int64_t rows = std::min(chunk_, N - r0);
    chunk_logits(r0, rows, Use::Any, local);
    if (vocab_parallel_ce_) tg_.gather(lm_head_.dst, local, rows, V_, full);
    be_.to_host(full, out.data() + r0 * V_, size_t(rows * V_) * sizeof(float));
  }
  if (vocab_parallel_ce_) be_.free_bytes(full);
  if (local != logits_) be_.free_bytes(local);
  return out;
}

// ---------------------------------------------------------------- backward

void Phi3Model::backward(float grad_scale) {
  check(have_forward_ && have_targets_,
        "model: backward() needs a forward() with targets before it (and only one backward "
        "per forward)");
  have_forward_ = false;
  logits_valid_ = false;
  begin_backward();
  // Per chunk of rows, last first (its logits may still be there from the forward).
  const int64_t N = int64_t(B_) * T_;
  for (int64_t r0 = last_chunk(); r0 >= 0 && num_targets_; r0 -= chunk_) {
    const int64_t rows = std::min(chunk_, N - r0);
    if (held_chunk_ != r0) chunk_logits(r0, rows, Use::Narrow);
    lm_head_backward(r0, rows, grad_scale);
  }
  backward_layers();
}

// The chunk's logits (in logits_) become dloss/dlogits = (softmax - onehot) / #targets in place,
// with the saved global m and s; then its rows of d_ln and its share of dW += dlogits^T x.
void Phi3Model::lm_head_backward(int64_t r0, int64_t rows, float grad_scale) {
  const int64_t N = int64_t(B_) * T_;
  const int64_t in_w = lm_head_.converts_input() ? lm_head_.in_local(tg_.size()) : H_;
  const float* lm_in = lm_head_.converts_input() ? lm_xin_ : lnf_;
  held_chunk_ = -1;  // overwritten by its gradient
  be_.ce_backward(logits_, rows, logits_width_, ce_ + r0, ce_ + N + r0, tgt_ + r0, logit_blocks_,
                  kIgnoreIndex, grad_scale / float(num_targets_), grad_gemm_use(lm_head_));
  const size_t w_numel = size_t(lm_head_.out_local(tg_.size()) * lm_head_.in_local(tg_.size()));
  open_grads(lm_head_.w_offset);
  const bool acc = grad_accumulates(lm_head_.w_offset, w_numel);
  linear_backward(be_, tg_, lm_head_, params_ + lm_head_.w_offset, grad(lm_head_.w_offset), acc,
                  logits_, lm_in + r0 * in_w, rows, sc_dy_, sc_dx_, d_ln_ + r0 * H_);
}

// Everything after the lm_head's backward (which left dL/d(final norm output) in d_ln_).
void Phi3Model::backward_layers() {
  // Ranges are reported in the same order whether or not there is a gradient to compute, so
  // that every DP rank starts the same collectives in the same order.
  const bool compute = num_targets_ > 0;  // no target, no loss: no gradient changes
  const int64_t N = int64_t(B_) * T_;
  const float* P = params_;

  if (compute) {
    be_.fill_zero(dres_, size_t(N * H_) * sizeof(float));
    open_grads(norm_off_);
    grad_will_add(norm_off_);
    be_.rmsnorm_backward(d_ln_, res_.back(), P + norm_off_, rstdf_, N, H_, dres_, grad(norm_off_),
                         dres_use(int(layers_.size()) - 1));
  }
  // Everything after the last layer (final norm, an untied lm_head) is final now.
  grads_final(tail_off(), layout_.total - tail_off());

  for (size_t l = layers_.size(); l-- > 0;) {
    if (compute && buffers_ckpt_ && acts_layer_ != int64_t(l)) {
      layer_forward(int(l), B_, T_, /*recompute=*/true);
      acts_layer_ = int64_t(l);
    }
    if (compute) {
      open_grads(layers_[l].lo);
      layer_backward(int(l), B_, T_);
    }
    grads_final(layers_[l].lo, layers_[l].hi - layers_[l].lo);
  }

  // dres = dL/d(embedding output), full on every rank.
  if (compute) {
    open_grads(embed_off_);
    grad_will_add(embed_off_);
    if (embed_split_ == EmbedSplit::Hidden) {
      // Backward of the all-gather: this rank's columns of the full gradient.
      tg_.slice(embed_layout_, dres_, N, H_, sc_d1_);
      be_.embedding_backward(ids_, N, sc_d1_, embed_dim_, embed_blocks_, config_.pad_token_id,
                             grad(embed_off_));
    } else {
      // Vocab-parallel: the all-reduce's backward is the identity (dres is full everywhere).
      be_.embedding_backward(ids_, N, dres_, embed_dim_, embed_blocks_, config_.pad_token_id,
                             grad(embed_off_));
    }
  }
  // The embedding (and, tied, the lm_head) comes first in the layout: [0, first layer).
  grads_final(0, first_layer_off());
  grads_zero_pending_ = false;
}

void Phi3Model::layer_backward(int l, int64_t B, int64_t T) {
  const Layer& L = layers_[size_t(l)];
  const LayerActs a = acts(size_t(l));
  const int64_t N = B * T, tp = tg_.size();
  const int64_t qkv_local = L.qkv_layout.local_width(config_.q_rows() + 2 * config_.kv_rows(), tp);
  const float* P = params_;
  // dres_ holds dL/d(out) on entry and dL/dx on exit; out = mid + mlp(mid) and
  // mid = x + attn(x), so each branch's input gradient is added onto the residual's.
  // The GEMM inputs the forward kept (LayerActs): its own, or the site's converted copy.
  auto input = [](const LinearSite& s, const float* xin, const float* kept) {
    return s.converts_input() ? xin : kept;
  };
  const float* act = input(L.down, a.down_xin, a.act);

  // Each weight's gradient is overwritten where zero_grad() left it pending (narrow when so set).
  auto acc = [&](const LinearSite& s) {
    return grad_accumulates(s.w_offset, size_t(s.out_local(tp) * s.in_local(tp)));
  };
  const Use dw = narrow_grads_ ? Use::Narrow : Use::Any;
  // Each input gradient below is read by the next op alone (Use::Narrow).
  linear_backward(be_, tg_, L.down, P + L.down.w_offset, grad(L.down.w_offset), acc(L.down), dres_,
                  act, N, sc_dy_, sc_dx_, sc_d1_, Use::Narrow, dw);
  be_.swiglu_backward(sc_d1_, a.sw_in, N, L.act_layout.local_width(I_, tp), sc_d2_,
                      grad_gemm_use(L.gate_up));
  const float* gu_in = input(L.gate_up, a.gu_xin, a.ln2);
  linear_backward(be_, tg_, L.gate_up, P + L.gate_up.w_offset, grad(L.gate_up.w_offset),
                  acc(L.gate_up), sc_d2_, gu_in, N, sc_dy_, sc_dx_, d_ln_, Use::Narrow, dw);
  // -> d(mid), read by o_proj's backward GEMMs next
  grad_will_add(L.ln2);
  be_.rmsnorm_backward(d_ln_, a.mid, P + L.ln2, a.rstd2, N, H_, dres_, grad(L.ln2),
                       grad_gemm_use(L.o));

  linear_backward(be_, tg_, L.o, P + L.o.w_offset, grad(L.o.w_offset), acc(L.o), dres_,
                  L.o.converts_input() ? a.o_xin : a.att_out, N, sc_dy_, sc_dx_, sc_d1_,
                  Use::Narrow, dw);
  be_.attention_backward(sc_d1_, a.att_in, a.att_out, a.lse, B, T, L.nq, L.nkv, hd_, sc_d2_,
                         grad_narrow_use(L.qkv));
  be_.rope_backward(sc_d2_, N, T, qkv_local, L.nq + L.nkv, hd_, rd_, cos_, sin_);
  linear_backward(be_, tg_, L.qkv, P + L.qkv.w_offset, grad(L.qkv.w_offset), acc(L.qkv), sc_d2_,
                  input(L.qkv, a.qkv_xin, a.ln1), N, sc_dy_, sc_dx_, d_ln_, Use::Narrow, dw);
  grad_will_add(L.ln1);
  be_.rmsnorm_backward(d_ln_, res_[size_t(l)], P + L.ln1, a.rstd1, N, H_, dres_, grad(L.ln1),
                       dres_use(l - 1));  // -> d(x)
}

Use Phi3Model::dres_use(int l) const {
  // A layer recomputed before its backward runs GEMMs of its own between the norm's backward
  // and down_proj's: dres must not stand as one GEMM's operand then (Use::Gemm), so fp32.
  const bool recomputed = buffers_ckpt_ && l + 1 < int(layers_.size());
  return l >= 0 && !recomputed ? grad_gemm_use(layers_[size_t(l)].down) : Use::Any;
}

}  // namespace autotp
