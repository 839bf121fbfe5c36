// AdamW and the squared norm, fp32 (the math is in optim/adamw.hpp). The update uses
// round-to-nearest intrinsics so that nvcc cannot fuse a*b+c into an FMA: every operation
// rounds as in the CPU backend's loop, and the two backends step bit-identically.
#include <algorithm>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
struct AdamWArgs {
  AdamWStep s;
  bool decay;
  float grad_scale;
};

// One element: p, m, v updated in place from g.
__device__ __forceinline__ void adamw_one(float& p, float& m, float& v, float g,
                                          const AdamWArgs& a) {
  const AdamWStep& s = a.s;
  const float gi = __fmul_rn(g, a.grad_scale);
  const float pi = a.decay ? __fmul_rn(p, s.decay_factor) : p;
  // torch's lerp switches formula at weight 0.5 to stay exact near the end point.
  const float mi =
      s.one_minus_beta1 < 0.5f
          ? __fadd_rn(m, __fmul_rn(s.one_minus_beta1, __fsub_rn(gi, m)))
          : __fsub_rn(gi, __fmul_rn(__fsub_rn(gi, m), __fsub_rn(1.0f, s.one_minus_beta1)));
  // v = v * beta2 + (1 - beta2) * g * g
  const float vi =
      __fadd_rn(__fmul_rn(v, s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, gi), gi));
  // p += -lr/bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
  const float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
  p = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step_size, mi), den));
  m = mi;
  v = vi;
}

// Elements [0, n): scalar. `shadow`, when set, receives bf16(p) in the same pass.
__global__ void adamw_kernel(float* p, float* m, float* v, const float* g, size_t n, AdamWArgs a,
                             __nv_bfloat16* shadow) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_one(pi, mi, vi, g[i], a);
    p[i] = pi, m[i] = mi, v[i] = vi;
    if (shadow) shadow[i] = __float2bfloat16_rn(pi);
  }
}

// The same on n4 groups of 4 (every pointer 16-byte aligned): 28-30 bytes per element move
// either way, but 16-byte accesses get closer to the memory bandwidth.
__global__ void adamw4_kernel(float4* p, float4* m, float4* v, const float4* g, size_t n4,
                              AdamWArgs a, __nv_bfloat162* shadow) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
       i += size_t(gridDim.x) * blockDim.x) {
    float4 pi = p[i], mi = m[i], vi = v[i];
    const float4 gi = g[i];
    adamw_one(pi.x, mi.x, vi.x, gi.x, a);
    adamw_one(pi.y, mi.y, vi.y, gi.y, a);
    adamw_one(pi.z, mi.z, vi.z, gi.z, a);
    adamw_one(pi.w, mi.w, vi.w, gi.w, a);
    p[i] = pi, m[i] = mi, v[i] = vi;
    if (shadow) {
      shadow[2 * i] = __floats2bfloat162_rn(pi.x, pi.y);
      shadow[2 * i + 1] = __floats2bfloat162_rn(pi.z, pi.w);
    }
  }
}

// Per-block partial sums of x^2 in double; a second pass adds the partials in a fixed order,
// so the result is deterministic.
// The n4 groups of 4 come first, as float4 loads (a scalar loop reached 2.5 of ~4.2 TB/s).
constexpr unsigned kSumBlocks = 1024;
__global__ void sum_squares_kernel(const float* x, size_t n, double* partial) {
  __shared__ double red[32];
  double acc = 0.0;
  const size_t first = size_t(blockIdx.x) * blockDim.x + threadIdx.x,
               stride = size_t(gridDim.x) * blockDim.x;
  const size_t n4 = reinterpret_cast<uintptr_t>(x) % 16 == 0 ? n / 4 : 0;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  for (size_t i = first; i < n4; i += stride) {
    const float4 v = x4[i];
    acc += double(v.x) * double(v.x) + double(v.y) * double(v.y) + double(v.z) * double(v.z) +
           double(v.w) * double(v.w);
  }
  for (size_t i = 4 * n4 + first; i < n; i += stride) acc += double(x[i]) * double(x[i]);
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
  for (float* out : {p, m, v}) wrote(out, n * sizeof(float));
  const AdamWArgs a{s, decay, grad_scale};
  // Parameters with a bf16 copy get it written here, which spares params_changed() a pass.
  __nv_bfloat16* sh = shadow_of(p, n);
  if (sh) shadow_fresh_ += n;
  size_t done = 0;
  if (aligned16(p, m, v, g) && n >= 4) {
    const size_t n4 = n / 4;
    adamw4_kernel<<<grid_for(n4), kThreads, 0, stream_>>>(
        reinterpret_cast<float4*>(p), reinterpret_cast<float4*>(m), reinterpret_cast<float4*>(v),
        reinterpret_cast<const float4*>(g), n4, a, reinterpret_cast<__nv_bfloat162*>(sh));
    AUTOTP_LAUNCHED("adamw4_kernel");
    done = 4 * n4;
  }
  if (done < n) {
    adamw_kernel<<<grid_for(n - done), kThreads, 0, stream_>>>(
        p + done, m + done, v + done, g + done, n - done, a, sh ? sh + done : nullptr);
    AUTOTP_LAUNCHED("adamw_kernel");
  }
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
