// SwiGLU of Phi3MLP: gu rows are [gate | up]; out = up * silu(gate), silu(g) = g * sigmoid(g).
#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
__global__ void swiglu_forward_kernel(const float* gu, int64_t N, int64_t I, float* out) {
  const size_t n = size_t(N) * size_t(I);
  for (size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += size_t(gridDim.x) * blockDim.x) {
    const size_t r = e / size_t(I), i = e % size_t(I);
    const float g = gu[r * 2 * I + i], u = gu[r * 2 * I + I + i];
    out[e] = u * (g / (1.0f + expf(-g)));
  }
}

// du = d * silu(g);  dg = d * u * silu'(g),  silu'(g) = sig(g) * (1 + g * (1 - sig(g)))
__global__ void swiglu_backward_kernel(const float* dout, const float* gu, int64_t N, int64_t I,
                                       float* dgu) {
  const size_t n = size_t(N) * size_t(I);
  for (size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += size_t(gridDim.x) * blockDim.x) {
    const size_t r = e / size_t(I), i = e % size_t(I);
    const float g = gu[r * 2 * I + i], u = gu[r * 2 * I + I + i], d = dout[e];
    const float sig = 1.0f / (1.0f + expf(-g));
    dgu[r * 2 * I + I + i] = d * g * sig;
    dgu[r * 2 * I + i] = d * u * sig * (1.0f + g * (1.0f - sig));
  }
}
}  // namespace

void CudaBackendImpl::swiglu_forward(const float* gu, int64_t N, int64_t I, float* out) {
  if (N <= 0 || I <= 0) return;
  Timed t(*this, "swiglu");
  swiglu_forward_kernel<<<grid_for(size_t(N * I)), kThreads, 0, stream_>>>(gu, N, I, out);
  AUTOTP_LAUNCHED("swiglu_forward_kernel");
}

void CudaBackendImpl::swiglu_backward(const float* dout, const float* gu, int64_t N, int64_t I,
                                      float* dgu) {
  if (N <= 0 || I <= 0) return;
  Timed t(*this, "swiglu");
  swiglu_backward_kernel<<<grid_for(size_t(N * I)), kThreads, 0, stream_>>>(dout, gu, N, I, dgu);
  AUTOTP_LAUNCHED("swiglu_backward_kernel");
}

}  // namespace autotp::cuda
