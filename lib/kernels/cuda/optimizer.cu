// AdamW and the squared norm, fp32 (the math is in optim/adamw.hpp). The update uses
// round-to-nearest intrinsics so that nvcc cannot fuse a*b+c into an FMA: every operation
// rounds as in the CPU backend's loop, and the two backends step bit-identically.
#include <algorithm>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
__global__ void adamw_kernel(float* p, float* m, float* v, const float* g, size_t n, AdamWStep s,
                             bool decay, float grad_scale) {
  // torch's lerp switches formula at weight 0.5 to stay exact near the end point.
  const bool small_w = s.one_minus_beta1 < 0.5f;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const float gi = __fmul_rn(g[i], grad_scale);
    float pi = p[i];
    if (decay) pi = __fmul_rn(pi, s.decay_factor);
    const float mo = m[i];
    const float mi =
        small_w ? __fadd_rn(mo, __fmul_rn(s.one_minus_beta1, __fsub_rn(gi, mo)))
                : __fsub_rn(gi, __fmul_rn(__fsub_rn(gi, mo), __fsub_rn(1.0f, s.one_minus_beta1)));
    // v = v * beta2 + (1 - beta2) * g * g
    const float vi =
        __fadd_rn(__fmul_rn(v[i], s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, gi), gi));
    // p += -lr/bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
    const float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
    p[i] = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step_size, mi), den));
    m[i] = mi;
    v[i] = vi;
  }
}

// Per-block partial sums of x^2 in double; a second pass adds the partials in a fixed order,
// so the result is deterministic.
constexpr unsigned kSumBlocks = 1024;
__global__ void sum_squares_kernel(const float* x, size_t n, double* partial) {
  __shared__ double red[32];
  double acc = 0.0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    acc += double(x[i]) * double(x[i]);
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(double* partial, unsigned n) {
  __shared__ double red[32];
  double acc = 0.0;
  for (unsigned i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) partial[0] = acc;
}
}  // namespace

void CudaBackendImpl::adamw(float* p, float* m, float* v, const float* g, size_t n,
                            const AdamWStep& s, bool decay, float grad_scale) {
  if (!n) return;
  Timed t(*this, "optimizer");
  adamw_kernel<<<grid_for(n), kThreads, 0, stream_>>>(p, m, v, g, n, s, decay, grad_scale);
  AUTOTP_LAUNCHED("adamw_kernel");
}

double CudaBackendImpl::sum_squares(const float* x, size_t n) {
  if (!n) return 0.0;
  auto* partial = static_cast<double*>(scratch(Scratch::Reduce, kSumBlocks * sizeof(double)));
  const unsigned blocks = std::min(kSumBlocks, grid_for(n));
  double out = 0.0;
  {
    Timed t(*this, "optimizer");
    sum_squares_kernel<<<blocks, kThreads, 0, stream_>>>(x, n, partial);
    AUTOTP_LAUNCHED("sum_squares_kernel");
    sum_partials_kernel<<<1, kThreads, 0, stream_>>>(partial, blocks);
    AUTOTP_LAUNCHED("sum_partials_kernel");
  }
  to_host(partial, &out, sizeof(double));
  return out;
}

}  // namespace autotp::cuda
