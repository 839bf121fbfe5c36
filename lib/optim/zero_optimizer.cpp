#include "optim/zero_optimizer.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <tuple>

#include "core/error.hpp"
#include "optim/adamw.hpp"

namespace autotp {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void check_config(const OptimizerConfig& o, int stage, double clip) {
  // DeepSpeed's "Adam" is AdamW unless adam_w_mode is false (its default is true).
  const std::string t = lower(o.type);
  check(t == "adamw" || t == "adam", "ds_config optimizer.type '", o.type,
        "' is not supported: autotp trains with AdamW (write \"type\": \"AdamW\")");
  check(stage >= 0 && stage <= 2, "ds_config zero_optimization.stage ", stage,
        " is not supported: use 0, 1 or 2 (ZeRO-3 is not implemented)");
  check(std::isfinite(o.lr) && o.lr >= 0, "ds_config optimizer.params.lr ", o.lr,
        " must be a non-negative number");
  check(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
        "ds_config optimizer.params.betas [", o.beta1, ", ", o.beta2, "] must lie in [0, 1)");
  check(o.eps > 0, "ds_config optimizer.params.eps ", o.eps, " must be positive");
  check(o.weight_decay >= 0, "ds_config optimizer.params.weight_decay ", o.weight_decay,
        " must be non-negative");
  check(std::isfinite(clip) && clip >= 0, "ds_config gradient_clipping ", clip,
        " must be non-negative (0 turns clipping off)");
}

// The slots must tile [0, total) in order: the shard ranges and the per-slot flags rely on it.
void check_layout(const ParamLayout& l) {
  size_t at = 0;
  for (auto& s : l.slots) {
    check(s.offset == at, "parameter layout: slot '", s.name, "' starts at ", s.offset,
          " but the previous slot ends at ", at, " (slots must be packed in order)");
    at += s.numel;
  }
  check(at == l.total, "parameter layout: slots hold ", at, " elements but total is ", l.total);
}

// Calls f(begin, end, slot) for each slot's part inside [lo, hi).
template <typename F>
void for_each_segment(const ParamLayout& l, size_t lo, size_t hi, F&& f) {
  for (auto& s : l.slots) {
    const size_t b = std::max(lo, s.offset), e = std::min(hi, s.offset + s.numel);
    if (b < e) f(b, e, s);
  }
}

}  // namespace

std::pair<size_t, size_t> ZeroOptimizer::shard_range(size_t total, int dp, int r) {
  const size_t s = (total + size_t(dp) - 1) / size_t(dp);  // padded / dp
  const size_t b = std::min(total, size_t(r) * s);
  return {b, std::min(total, b + s)};
}

ZeroOptimizer::ZeroOptimizer(const OptimizerConfig& opt, int zero_stage, double grad_clip,
                             const ParamLayout& layout, float* params, float* grads, Comm& dp,
                             Comm& tp, Backend& backend, size_t bucket_numel)
    : opt_(opt),
      stage_(zero_stage),
      clip_(grad_clip),
      layout_(layout),
      params_(params),
      grads_(grads),
      dp_(dp),
      tp_(tp),
      bucket_numel_(std::max<size_t>(bucket_numel, 1)),
      be_(backend) {
  check_config(opt, zero_stage, grad_clip);
  check_layout(layout);
  check(layout.total == 0 || params, "ZeroOptimizer: params must be set");
  check(layout.total == 0 || grads || shards_grads(zero_stage, dp_.size()),
        "ZeroOptimizer: no gradient buffer, but bucketed gradients need ZeRO-2 over dp > 1 (stage ",
        zero_stage, ", dp ", dp_.size(), ")");
  const size_t n = size_t(dp_.size());
  shard_size_ = (layout.total + n - 1) / n;
  std::tie(own_lo_, own_hi_) = shard_range(layout.total, dp_.size(), dp_.rank());
  if (stage_ == 0) {
    state_lo_ = 0;
    state_hi_ = layout.total;
  } else {
    state_lo_ = own_lo_;
    state_hi_ = own_hi_;
  }
  const size_t ns = state_numel();
  master_is_params_ = !keeps_master_copy(stage_, dp_.size());
  master_ = master_is_params_ ? params_ : be_.alloc(ns);
  m_ = be_.alloc(ns);  // zero-filled
  v_ = be_.alloc(ns);
  if (ns && !master_is_params_) be_.copy_values(params_ + state_lo_, master_, ns);
  // Bucketed gradients: the own shard's sum is the only fp32 gradient this rank keeps.
  if (!grads_) gshard_ = be_.alloc(own_hi_ - own_lo_);
  // The pieces of a whole buffer: [0, total) cut at the shard boundaries (element i belongs to
  // DP rank i / S) and at multiples of bucket_numel. A group of one sums nothing: no pieces.
  for (size_t at = 0; grads_ && n > 1 && at < layout.total;) {
    const size_t b = at;
    at = std::min({layout.total, (at / shard_size_ + 1) * shard_size_,
                   (at / bucket_numel_ + 1) * bucket_numel_});
    pieces_.push_back({b, at, at - b});
  }
  chunk_ = std::max<size_t>(1, std::min(shard_size_, bucket_numel_ / n));
  if (stage_ > 0 && n > 1) scratch_ = be_.alloc((n + 1) * chunk_);
}

ZeroOptimizer::~ZeroOptimizer() {
  if (master_is_params_) master_ = nullptr;
  for (float* p : {master_, m_, v_, scratch_, gshard_})
    if (p) be_.free_bytes(p);
}

float* ZeroOptimizer::state_buffer(State which) {
  return which == State::Master ? master_ : which == State::ExpAvg ? m_ : v_;
}

std::vector<float> ZeroOptimizer::state_to_host(State which) {
  std::vector<float> h(state_numel());
  if (!h.empty()) be_.to_host(state_buffer(which), h.data(), h.size() * sizeof(float));
  return h;
}

void ZeroOptimizer::state_from_host(State which, const float* host) {
  if (state_numel()) be_.from_host(host, state_buffer(which), state_numel() * sizeof(float));
}

void ZeroOptimizer::set_step_count(int64_t n) {
  check(n >= 0, "optimizer checkpoint: step count ", n, " must be non-negative");
  step_ = n;
}

void ZeroOptimizer::zero_grad() {
  check(reported_.empty() && reduced_.empty(),
        "optimizer: zero_grad() while the DP sum of reported gradients is running; call step() "
        "first");
  if (gshard_) be_.fill_zero(gshard_, (own_hi_ - own_lo_) * sizeof(float));
  if (zero_grad_fn_)
    zero_grad_fn_();
  else if (layout_.total && grads_)
    be_.fill_zero(grads_, layout_.total * sizeof(float));
}

void ZeroOptimizer::start_piece(const Piece& p) {
  if (stage_ == 2)
    dp_.reduce_sum_async(grads_ + p.begin, p.end - p.begin, int(p.begin / shard_size_));
  else
    dp_.all_reduce_sum_async(grads_ + p.begin, p.end - p.begin);
}

void ZeroOptimizer::grads_ready(size_t offset, size_t count, float* g) {
  const size_t total = layout_.total;
  check(offset <= total && count <= total - offset, "optimizer: ", count, " gradients at offset ",
        offset, " reported ready lie outside the model's ", total, " gradients");
  if (count == 0) return;
  const size_t end = offset + count;
  if (!grads_) {
    check(g != nullptr, "optimizer: bucketed gradients [", offset, ", ", end,
          ") reported without their values");
    // The same range of the last micro-batch, if still running, is added first: each piece of
    // the shard sums the micro-batches in order.
    finish_grads(offset, count);
    // Each piece to its owner: cut at the shard boundaries, and at bucket_numel.
    for (size_t b = offset; b < end;) {
      const size_t e = std::min({end, (b / shard_size_ + 1) * shard_size_, b + bucket_numel_});
      dp_.reduce_sum_async(g + (b - offset), e - b, int(b / shard_size_));
      b = e;
    }
    reduced_.push_back({offset, end, g, dp_.mark()});
    return;
  }
  // The reported range that overlaps [offset, end), if any: the last one starting before end.
  auto after = reported_.lower_bound(end);
  if (after != reported_.begin()) {
    auto prev = std::prev(after);
    check(prev->second <= offset, "optimizer: gradient range [", offset, ", ", end,
          ") reported ready overlaps [", prev->first, ", ", prev->second,
          "), reported earlier in this step; each element must be reported once per step");
  }
  reported_.emplace_hint(after, offset, end);
  // The pieces [offset, end) touches; one whose last elements these are starts now.
  auto p = std::partition_point(pieces_.begin(), pieces_.end(),
                                [&](const Piece& q) { return q.end <= offset; });
  for (; p != pieces_.end() && p->begin < end; ++p) {
    p->unreported -= std::min(end, p->end) - std::max(offset, p->begin);
    if (p->unreported == 0) start_piece(*p);
  }
}

void ZeroOptimizer::finish(const Reduced& r) {
  dp_.wait_until(r.mark);
  const size_t b = std::max(r.begin, own_lo_), e = std::min(r.end, own_hi_);
  if (b < e) be_.add(r.g + (b - r.begin), gshard_ + (b - own_lo_), e - b);
}

void ZeroOptimizer::finish_grads(size_t offset, size_t count) {
  const size_t end = offset + count;
  for (size_t i = 0; i < reduced_.size();) {
    if (reduced_[i].begin < end && offset < reduced_[i].end) {
      finish(reduced_[i]);
      reduced_.erase(reduced_.begin() + std::ptrdiff_t(i));
    } else {
      ++i;
    }
  }
}

// grads <- sum over DP / dp: everywhere (stages 0/1) or on the own shard only (stage 2). The
// pieces not started yet go in layout order, so every rank starts the same ones.
void ZeroOptimizer::average_grads() {
  if (!grads_) {  // bucketed: every range was reported; their sums complete into the shard
    finish_grads(0, layout_.total);
    if (own_hi_ > own_lo_) be_.scale(gshard_, own_hi_ - own_lo_, 1.0f / float(dp_.size()));
    return;
  }
  reported_.clear();
  for (Piece& p : pieces_) {
    if (p.unreported > 0) start_piece(p);
    p.unreported = p.end - p.begin;
  }
  const int n = dp_.size();
  if (n == 1) return;
  dp_.wait_all();
  const size_t lo = stage_ < 2 ? 0 : own_lo_, hi = stage_ < 2 ? layout_.total : own_hi_;
  if (hi > lo) be_.scale(grads_ + lo, hi - lo, 1.0f / float(n));
}

// The sum of one double over a group, identical on every rank: each rank's value travels as a
// (hi, lo) float pair (about 48 bits kept, not float32's 24), and every rank adds them in rank
// order.
double ZeroOptimizer::sum_over(Comm& c, double x) {
  if (c.size() == 1) return x;
  float mine[2] = {float(x), 0.0f};
  if (std::isfinite(mine[0])) mine[1] = float(x - double(mine[0]));
  std::vector<float> all(2 * size_t(c.size()));
  c.all_gather(mine, all.data(), 2);
  double s = 0.0;
  for (int r = 0; r < c.size(); ++r) s += double(all[2 * r]) + double(all[2 * r + 1]);
  return s;
}

double ZeroOptimizer::global_grad_norm() {
  double counted = 0.0, uncounted = 0.0;
  const bool tp0 = tp_.rank() == 0;
  // Runs of adjacent segments of one kind go to sum_squares together: each call waits for the
  // device, and one call per slot (6 per layer) showed up as gaps in the step.
  size_t run_b = own_lo_, run_e = own_lo_;
  bool run_counted = true;
  auto flush = [&] {
    if (run_e > run_b)
      (run_counted ? counted : uncounted) += be_.sum_squares(own_grad(run_b), run_e - run_b);
  };
  for_each_segment(layout_, own_lo_, own_hi_, [&](size_t b, size_t e, const ParamSlot& s) {
    const bool c = !(s.tp_replicated && !tp0);
    if (c != run_counted || b != run_e) {
      flush();
      run_b = b;
      run_counted = c;
    }
    run_e = e;
  });
  flush();
  // A bad value in a copy the norm does not count (a replicated slot on tp_rank > 0) must
  // still stop the step on every rank.
  if (!std::isfinite(uncounted)) counted = std::numeric_limits<double>::quiet_NaN();
  return std::sqrt(sum_over(tp_, sum_over(dp_, counted)));
}

StepStats ZeroOptimizer::step(double lr) {
  check(std::isfinite(lr) && lr >= 0, "optimizer step ", step_ + 1, ": learning rate ", lr,
        " must be a non-negative number (check the scheduler settings)");
  StepStats st;
  average_grads();
  st.grad_norm = global_grad_norm();
  if (!std::isfinite(st.grad_norm)) {
    zero_grad();
    return st;
  }
  if (clip_ > 0) {
    // float32 like torch: total_norm is a float tensor.
    const float coef = float(clip_) / (float(st.grad_norm) + 1e-6f);
    st.clip_coef = std::min(coef, 1.0f);
  }
  ++step_;
  const AdamWStep s = adamw_step(opt_, lr, step_);
  for_each_segment(layout_, state_lo_, state_hi_, [&](size_t b, size_t e, const ParamSlot& slot) {
    const size_t j = b - state_lo_;
    be_.adamw(master_ + j, m_ + j, v_ + j, own_grad(b), e - b, s, slot.decay, st.clip_coef);
  });
  publish_params();
  zero_grad();
  st.applied = true;
  return st;
}

void ZeroOptimizer::publish_params() {
  const int n = dp_.size();
  if (stage_ == 0 || n == 1) {
    if (state_numel() && !master_is_params_)
      be_.copy_values(master_, params_ + state_lo_, state_numel());
    return;
  }
  // All-gather chunk by chunk: chunk [c, c + k) of every rank's shard travels in one call;
  // padding past total is sent as zeros and never stored.
  const size_t own = own_hi_ - own_lo_;
  for (size_t c = 0; c < shard_size_; c += chunk_) {
    const size_t k = std::min(chunk_, shard_size_ - c);
    float* send = scratch_;
    float* recv = send + k;
    const size_t mine = c < own ? std::min(k, own - c) : 0;
    if (mine) be_.copy(master_ + c, send, mine * sizeof(float));
    if (k > mine) be_.fill_zero(send + mine, (k - mine) * sizeof(float));
    dp_.all_gather(send, recv, k);
    for (int d = 0; d < n; ++d) {
      const size_t b = std::min(layout_.total, d * shard_size_ + c);
      const size_t e = std::min(layout_.total, b + k);
      if (e > b) be_.copy_values(recv + d * k, params_ + b, e - b);
    }
  }
}

}  // namespace autotp
