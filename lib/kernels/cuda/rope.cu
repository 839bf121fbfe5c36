// Rotary position embedding, rotate-half (NeoX) layout on the first rotary_dim dims of each
// head; one block per token row.
#include <algorithm>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// sign = +1: y1 = a*c - b*s, y2 = b*c + a*s for the pair (a, b) = (v_i, v_{i+half});
// sign = -1: the transpose (the backward), the same rotation with -sin. X: float, or bf16 for a
// narrow buffer (the rotation in fp32, the result rounded back).
template <typename X>
__global__ void rope_kernel(X* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
                            int64_t head_dim, int64_t half, const float* cos, const float* sin,
                            float sign) {
  // One block per token row (grid-stride), threads over its (head, pair) items: the row's
  // position and table rows are computed once, and the per-item split is a 32-bit division.
  const unsigned items = unsigned(n_heads * half), hf = unsigned(half);
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const int64_t t = row % T;
    const float* c_t = cos + t * half;
    const float* s_t = sin + t * half;
    X* xr = x + row * ld;
    for (unsigned e = threadIdx.x; e < items; e += blockDim.x) {
      const unsigned h = e / hf, i = e - h * hf;
      X* v = xr + int64_t(h) * head_dim;
      const float c = c_t[i], si = sign * s_t[i];
      const float a = to_float(v[i]), b = to_float(v[i + half]);
      store1(v + i, a * c - b * si);
      store1(v + i + half, b * c + a * si);
    }
  }
}
}  // namespace

namespace {
void rope(CudaBackendImpl& be, float* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
          int64_t head_dim, int64_t rotary_dim, const float* cos, const float* sin, float sign) {
  const int64_t half = rotary_dim / 2;
  if (N <= 0 || n_heads <= 0 || half <= 0) return;
  CudaBackendImpl::Timed t(be, "norm+rope");
  check(n_heads * half <= INT32_MAX, "cuda rope: ", n_heads, " heads x ", half,
        " pairs exceed 32-bit indexing");
  // In place on a narrow x, it stays narrow: the bf16 copy is rotated.
  const size_t span = size_t((N - 1) * ld + n_heads * head_dim);
  __nv_bfloat16* x16 = be.narrow_of(x, span, false);
  if (!x16) be.wrote(x, span * sizeof(float));
  auto launch = [&](auto* p) {
    rope_kernel<<<unsigned(std::min<int64_t>(N, 65535)), kThreads, 0, be.stream()>>>(
        p, N, T, ld, n_heads, head_dim, half, cos, sin, sign);
  };
  x16 ? launch(x16) : launch(x);
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
