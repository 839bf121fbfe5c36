// Rotary position embedding, rotate-half (NeoX) layout on the first rotary_dim dims of each
// head; one thread per rotated pair.
#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// sign = +1: y1 = a*c - b*s, y2 = b*c + a*s for the pair (a, b) = (v_i, v_{i+half});
// sign = -1: the transpose (the backward), the same rotation with -sin.
__global__ void rope_kernel(float* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
                            int64_t head_dim, int64_t half, const float* cos, const float* sin,
                            float sign) {
  const size_t n = size_t(N) * size_t(n_heads) * size_t(half);
  for (size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += size_t(gridDim.x) * blockDim.x) {
    const int64_t i = int64_t(e % size_t(half));
    const int64_t h = int64_t(e / size_t(half) % size_t(n_heads));
    const int64_t row = int64_t(e / size_t(half * n_heads));
    const int64_t t = row % T;
    float* v = x + row * ld + h * head_dim;
    const float c = cos[t * half + i], si = sign * sin[t * half + i];
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * si;
    v[i + half] = b * c + a * si;
  }
}
}  // namespace

namespace {
void rope(CudaBackendImpl& be, float* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
          int64_t head_dim, int64_t rotary_dim, const float* cos, const float* sin, float sign) {
  const int64_t half = rotary_dim / 2;
  if (N <= 0 || n_heads <= 0 || half <= 0) return;
  CudaBackendImpl::Timed t(be, "norm+rope");
  rope_kernel<<<grid_for(size_t(N * n_heads * half)), kThreads, 0, be.stream()>>>(
      x, N, T, ld, n_heads, head_dim, half, cos, sin, sign);
  AUTOTP_LAUNCHED("rope_kernel");
}
}  // namespace

void CudaBackendImpl::rope_forward(float* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
                                   int64_t head_dim, int64_t rotary_dim, const float* cos,
                                   const float* sin) {
  rope(*this, x, N, T, ld, n_heads, head_dim, rotary_dim, cos, sin, 1.0f);
}

void CudaBackendImpl::rope_backward(float* dx, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
                                    int64_t head_dim, int64_t rotary_dim, const float* cos,
                                    const float* sin) {
  rope(*this, dx, N, T, ld, n_heads, head_dim, rotary_dim, cos, sin, -1.0f);
}

}  // namespace autotp::cuda
