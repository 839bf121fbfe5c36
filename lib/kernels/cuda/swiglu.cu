// SwiGLU of Phi3MLP: gu rows are [gate | up]; out = up * silu(gate), silu(g) = g * sigmoid(g).
#include <algorithm>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// One block per row (grid-stride over rows), threads over the row's columns: no 64-bit division
// per element, and 16-byte accesses where I is a multiple of 4 (V = float4) or not (V = float).
__device__ __forceinline__ float silu(float g) {
  return g / (1.0f + expf(-g));
}

template <typename V>
__global__ void swiglu_forward_kernel(const float* gu, int64_t N, int64_t I, float* out) {
  constexpr int k = sizeof(V) / sizeof(float);
  const int64_t cols = I / k;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const V* g = reinterpret_cast<const V*>(gu + r * 2 * I);
    const V* u = reinterpret_cast<const V*>(gu + r * 2 * I + I);
    V* o = reinterpret_cast<V*>(out + r * I);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const V gv = g[c], uv = u[c];
      V ov;
      const float *gp = reinterpret_cast<const float*>(&gv),
                  *up = reinterpret_cast<const float*>(&uv);
      float* op = reinterpret_cast<float*>(&ov);
#pragma unroll
      for (int j = 0; j < k; ++j) op[j] = up[j] * silu(gp[j]);
      o[c] = ov;
    }
  }
}

// du = d * silu(g);  dg = d * u * silu'(g),  silu'(g) = sig(g) * (1 + g * (1 - sig(g)))
template <typename V>
__global__ void swiglu_backward_kernel(const float* dout, const float* gu, int64_t N, int64_t I,
                                       float* dgu) {
  constexpr int k = sizeof(V) / sizeof(float);
  const int64_t cols = I / k;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const V* g = reinterpret_cast<const V*>(gu + r * 2 * I);
    const V* u = reinterpret_cast<const V*>(gu + r * 2 * I + I);
    const V* d = reinterpret_cast<const V*>(dout + r * I);
    V* dg = reinterpret_cast<V*>(dgu + r * 2 * I);
    V* du = reinterpret_cast<V*>(dgu + r * 2 * I + I);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const V gv = g[c], uv = u[c], dv = d[c];
      V dgv, duv;
      const float *gp = reinterpret_cast<const float*>(&gv),
                  *up = reinterpret_cast<const float*>(&uv),
                  *dp = reinterpret_cast<const float*>(&dv);
      float *dgp = reinterpret_cast<float*>(&dgv), *dup = reinterpret_cast<float*>(&duv);
#pragma unroll
      for (int j = 0; j < k; ++j) {
        const float sig = 1.0f / (1.0f + expf(-gp[j]));
        dup[j] = dp[j] * gp[j] * sig;
        dgp[j] = dp[j] * up[j] * sig * (1.0f + gp[j] * (1.0f - sig));
      }
      dg[c] = dgv;
      du[c] = duv;
    }
  }
}

unsigned row_blocks(int64_t N) {
  return unsigned(std::min<int64_t>(N, 65535));
}
}  // namespace

void CudaBackendImpl::swiglu_forward(const float* gu, int64_t N, int64_t I, float* out) {
  if (N <= 0 || I <= 0) return;
  Timed t(*this, "swiglu");
  if (I % 4 == 0 && aligned16(gu, out))
    swiglu_forward_kernel<float4><<<row_blocks(N), kThreads, 0, stream_>>>(gu, N, I, out);
  else
    swiglu_forward_kernel<float><<<row_blocks(N), kThreads, 0, stream_>>>(gu, N, I, out);
  AUTOTP_LAUNCHED("swiglu_forward_kernel");
}

void CudaBackendImpl::swiglu_backward(const float* dout, const float* gu, int64_t N, int64_t I,
                                      float* dgu) {
  if (N <= 0 || I <= 0) return;
  Timed t(*this, "swiglu");
  if (I % 4 == 0 && aligned16(gu, dgu, dout))
    swiglu_backward_kernel<float4><<<row_blocks(N), kThreads, 0, stream_>>>(dout, gu, N, I, dgu);
  else
    swiglu_backward_kernel<float><<<row_blocks(N), kThreads, 0, stream_>>>(dout, gu, N, I, dgu);
  AUTOTP_LAUNCHED("swiglu_backward_kernel");
}

}  // namespace autotp::cuda
