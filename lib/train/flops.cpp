#include "train/flops.hpp"

namespace autotp {

StepFlops count_step_flops(const ModelConfig& mc, int64_t seq_length, int64_t tokens) {
  const double L = double(mc.num_hidden_layers), H = double(mc.hidden_size);
  const double I = double(mc.intermediate_size), V = double(mc.vocab_size);
  const double q = double(mc.q_rows()), kv = double(mc.kv_rows()), T = double(seq_length);
  const double n = double(tokens);
  StepFlops f;
  f.total = 6.0 * double(mc.num_parameters()) * n + 12.0 * L * H * T * n;
  // qkv [q + 2kv, H], o [H, q], gate_up [2I, H], down [H, I] per layer; lm_head [V, H] (the
  // embedding itself when tied).
  const double linear = L * (H * (q + 2 * kv) + q * H + 2 * I * H + I * H) + V * H;
  f.gemm = 6.0 * linear * n;
  f.attention = 12.0 * L * q * T * n;
  return f;
}

StepTraffic estimate_traffic(const ModelConfig& mc, int64_t tokens_per_rank, int64_t tp,
                             size_t local_params, size_t state_numel, double act_bytes) {
  const double L = double(mc.num_hidden_layers), H = double(mc.hidden_size);
  const double I = double(mc.intermediate_size) / double(tp), V = double(mc.vocab_size) / tp;
  const double qk = double(mc.q_rows() + mc.kv_rows()) / double(tp);
  const double n = double(tokens_per_rank);
  StepTraffic t;
  t.optimizer = 28.0 * double(state_numel) + (4.0 + 6.0) * double(local_params);
  const double per_token_layer = 2 * (2 * H + 3 * H) + 2 * 3 * H + 2 * 3 * H + 4 * qk + 8 * I;
  t.activations = act_bytes * n * (L * per_token_layer + 4 * H);
  t.cross_entropy = n * V * (2 * act_bytes + 2);
  return t;
}

}  // namespace autotp
