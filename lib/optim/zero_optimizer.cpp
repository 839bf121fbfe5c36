#include "optim/zero_optimizer.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
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
                             Comm& tp, size_t bucket_numel)
    : opt_(opt),
      stage_(zero_stage),
      clip_(grad_clip),
      layout_(layout),
      params_(params),
      grads_(grads),
      dp_(dp),
      tp_(tp),
      bucket_numel_(std::max<size_t>(bucket_numel, 1)) {
  check_config(opt, zero_stage, grad_clip);
  check_layout(layout);
  check(layout.total == 0 || (params && grads), "ZeroOptimizer: params and grads must be set");
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
  master_.assign(params_ + state_lo_, params_ + state_hi_);
  m_.assign(master_.size(), 0.0f);
  v_.assign(master_.size(), 0.0f);
  chunk_ = std::max<size_t>(1, std::min(shard_size_, bucket_numel_ / n));
  if (stage_ > 0 && n > 1) scratch_.resize((n + 1) * chunk_);
}

void ZeroOptimizer::set_step_count(int64_t n) {
  check(n >= 0, "optimizer checkpoint: step count ", n, " must be non-negative");
  step_ = n;
}

void ZeroOptimizer::zero_grad() {
  if (layout_.total) std::memset(grads_, 0, layout_.total * sizeof(float));
}

// grads <- sum over DP / dp: everywhere (stages 0/1) or on the own shard only (stage 2).
void ZeroOptimizer::average_grads() {
  const int n = dp_.size();
  if (n == 1) return;
  const float fn = float(n);
  if (stage_ < 2) {
    for (size_t b = 0; b < layout_.total; b += bucket_numel_)
      dp_.all_reduce_sum(grads_ + b, std::min(bucket_numel_, layout_.total - b));
    for (size_t i = 0; i < layout_.total; ++i) grads_[i] /= fn;
    return;
  }
  // Reduce-scatter chunk by chunk: chunk [c, c + k) of every rank's shard travels in one call;
  // padding past total is sent as zeros.
  for (size_t c = 0; c < shard_size_; c += chunk_) {
    const size_t k = std::min(chunk_, shard_size_ - c);
    float* send = scratch_.data();
    float* recv = send + size_t(n) * k;
    for (int d = 0; d < n; ++d) {
      const size_t b = std::min(layout_.total, d * shard_size_ + c);
      const size_t e = std::min(layout_.total, b + k);
      std::memcpy(send + d * k, grads_ + b, (e - b) * sizeof(float));
      std::fill(send + d * k + (e - b), send + (d + 1) * k, 0.0f);
    }
    dp_.reduce_scatter_sum(send, recv, k);
    const size_t b = std::min(own_hi_, own_lo_ + c), e = std::min(own_hi_, b + k);
    for (size_t i = b; i < e; ++i) grads_[i] = recv[i - b] / fn;
  }
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
  for_each_segment(layout_, own_lo_, own_hi_, [&](size_t b, size_t e, const ParamSlot& s) {
    double ss = 0.0;
    for (size_t i = b; i < e; ++i) ss += double(grads_[i]) * double(grads_[i]);
    (s.tp_replicated && !tp0 ? uncounted : counted) += ss;
  });
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
  const AdamWStep s = AdamWStep::make(opt_, lr, step_);
  for_each_segment(layout_, state_lo_, state_hi_, [&](size_t b, size_t e, const ParamSlot& slot) {
    const size_t j = b - state_lo_;
    adamw_update(&master_[j], &m_[j], &v_[j], grads_ + b, e - b, s, slot.decay, st.clip_coef);
  });
  publish_params();
  zero_grad();
  st.applied = true;
  return st;
}

void ZeroOptimizer::publish_params() {
  const int n = dp_.size();
  if (stage_ == 0 || n == 1) {
    std::copy(master_.begin(), master_.end(), params_ + state_lo_);
    return;
  }
  // All-gather chunk by chunk, the mirror of the reduce-scatter in average_grads().
  const size_t own = own_hi_ - own_lo_;
  for (size_t c = 0; c < shard_size_; c += chunk_) {
    const size_t k = std::min(chunk_, shard_size_ - c);
    float* send = scratch_.data();
    float* recv = send + k;
    const size_t mine = c < own ? std::min(k, own - c) : 0;
    if (mine) std::memcpy(send, master_.data() + c, mine * sizeof(float));
    std::fill(send + mine, send + k, 0.0f);
    dp_.all_gather(send, recv, k);
    for (int d = 0; d < n; ++d) {
      const size_t b = std::min(layout_.total, d * shard_size_ + c);
      const size_t e = std::min(layout_.total, b + k);
      std::memcpy(params_ + b, recv + d * k, (e - b) * sizeof(float));
    }
  }
}

}  // namespace autotp
