#include "model/parallel_linear.hpp"

namespace autotp {

LinearSite LinearSite::make(const ParamSlot& slot, int64_t tp, const Layout& src,
                            const Layout& dst) {
  LinearSite s;
  const ShardSpec& spec = *slot.spec;
  s.w_offset = slot.offset;
  s.out = spec.shape[0];
  s.in = spec.shape[1];
  s.split = spec.replicated() || tp == 1 ? -1 : spec.split_dim;
  s.in_layout = s.split == 1 ? Layout::S(spec.parts) : Layout::R();
  s.out_layout = s.split == 0 ? Layout::S(spec.parts) : Layout::R();
  s.src = tp == 1 ? Layout::R() : src;
  s.dst = tp == 1 ? Layout::R() : dst;
  return s;
}

const float* linear_forward(Backend& be, TpGroup& g, const LinearSite& s, const float* W,
                            const float* x, int64_t N, float* xin, float* tmp, float* y, Use use) {
  const int64_t tp = g.size(), O = s.out_local(tp), I = s.in_local(tp);
  const float* a = x;
  if (s.converts_input()) {
    g.convert(s.src, s.in_layout, x, N, s.in, xin);
    a = xin;
  }
  float* out = s.converts_output() ? tmp : y;
  // out[N, O] = a[N, I] @ W_local[O, I]^T
  be.linear_gemm(N, O, I, a, W, out, s.y_use(use));
  // Row-parallel: each rank summed over its input columns only -> partial sums -> all-reduce.
  if (s.split == 1) g.all_reduce_sum(out, size_t(N * O));
  if (s.converts_output()) g.convert(s.out_layout, s.dst, out, N, s.out, y);
  return a;
}

void linear_backward(Backend& be, TpGroup& g, const LinearSite& s, const float* W, float* dW,
                     bool dW_accumulate, const float* dy, const float* xin, int64_t N,
                     float* tmp_dy, float* tmp_dx, float* dx, Use use, Use dW_use) {
  const int64_t tp = g.size(), O = s.out_local(tp), I = s.in_local(tp);
  // dy (dst) -> d(out) (out_layout): the backward of convert(out -> dst) is convert(dst -> out).
  const float* d = dy;
  if (s.converts_output()) {
    g.convert(s.dst, s.out_layout, dy, N, s.out, tmp_dy);
    d = tmp_dy;
  }
  // Row-parallel: the forward all-reduce's backward is the identity, since d(out) is full on
  // every rank and out = sum of the partials gives each partial the same gradient.
  // dW_local[O, I] (+)= d[N, O]^T @ xin[N, I];  d(in)[N, I] = d[N, O] @ W_local[O, I]
  float* din = s.converts_input() ? tmp_dx : dx;
  be.linear_backward_gemms(N, O, I, d, xin, W, dW, dW_accumulate, din,
                           s.split == 0 || s.converts_input() ? Use::Any : use, dW_use);
  // Column-parallel: each rank's din covers its output rows only, a partial sum of the full
  // input gradient -> all-reduce makes it full (the R invariant).
  if (s.split == 0) g.all_reduce_sum(din, size_t(N * I));
  if (s.converts_input()) g.convert(s.in_layout, s.src, din, N, s.in, dx);
}

}  // namespace autotp
