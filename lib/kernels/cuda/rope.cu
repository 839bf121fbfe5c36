// Rotary position embedding, rotate-half (NeoX) layout on the first rotary_dim dims of each
// head; one block per token row.
#include <algorithm>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// sign = +1: y1 = a*c - b*s, y2 = b*c + a*s for the pair (a, b) = (v_i, v_{i+half});
// sign = -1: the transpose (the backward), the same rotation with -sin. X: float, or bf16 for a
// narrow buffer (the rotation in fp32, the result rounded back). K consecutive pairs per thread
// (4 where the rows, heads and half allow 16-byte table and 8-byte bf16 accesses: the scalar
// version moved 2 bytes per access, half the copy rate).
template <int K, typename X>
__global__ void rope_kernel(X* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
                            int64_t head_dim, int64_t half, const float* cos, const float* sin,
                            float sign) {
  // One block per token row (grid-stride), threads over its (head, K pairs) items: the row's
  // position and table rows are computed once, and the per-item split is a 32-bit division.
  const unsigned groups = unsigned(half / K), items = unsigned(n_heads) * groups;
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const int64_t t = row % T;
    const float* c_t = cos + t * half;
    const float* s_t = sin + t * half;
    X* xr = x + row * ld;
    for (unsigned e = threadIdx.x; e < items; e += blockDim.x) {
      const unsigned h = e / groups, i = (e - h * groups) * K;
      X* v = xr + int64_t(h) * head_dim;
      float c[K], si[K], a[K], b[K], y1[K], y2[K];
      load_k<K>(c_t + i, c);
      load_k<K>(s_t + i, si);
      load_k<K>(v + i, a);
      load_k<K>(v + i + half, b);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        si[k] *= sign;
        y1[k] = a[k] * c[k] - b[k] * si[k];
        y2[k] = b[k] * c[k] + a[k] * si[k];
      }
      store_k<K>(v + i, y1);
      store_k<K>(v + i + half, y2);
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
  const bool vec = half % 4 == 0 && ld % 4 == 0 && head_dim % 4 == 0 && aligned16(cos, sin) &&
                   (x16 ? aligned16(x16) : aligned16(x));
  auto launch = [&](auto* p) {
    dispatch_k(vec, [&](auto k) {
      rope_kernel<decltype(k)::value>
          <<<unsigned(std::min<int64_t>(N, 65535)), kThreads, 0, be.stream()>>>(
              p, N, T, ld, n_heads, head_dim, half, cos, sin, sign);
    });
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
