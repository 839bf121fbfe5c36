// SwiGLU of Phi3MLP: gu rows are [gate | up]; out = up * silu(gate), silu(g) = g * sigmoid(g).
#include <algorithm>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// One block per row (grid-stride over rows), threads over the row's columns: no 64-bit division
// per element, and K floats per access (4 when I % 4 == 0 and the buffers are 16-byte aligned).
// OutT: float, or __nv_bfloat16 for a Use::Gemm output; the inputs float, or __nv_bfloat16
// where they are narrow.
__device__ __forceinline__ float silu(float g) {
  return g / (1.0f + expf(-g));
}

template <int K, typename InT, typename OutT>
__global__ void swiglu_forward_kernel(const InT* gu, int64_t N, int64_t I, OutT* out) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const InT* g = gu + r * 2 * I;
    for (int64_t c = int64_t(threadIdx.x) * K; c < I; c += int64_t(blockDim.x) * K) {
      float gv[K], uv[K];
      load_k<K>(g + c, gv);
      load_k<K>(g + I + c, uv);
#pragma unroll
      for (int j = 0; j < K; ++j) uv[j] *= silu(gv[j]);
      store_k<K>(out + r * I + c, uv);
    }
  }
}

// du = d * silu(g);  dg = d * u * silu'(g),  silu'(g) = sig(g) * (1 + g * (1 - sig(g)))
template <int K, typename DT, typename InT, typename OutT>
__global__ void swiglu_backward_kernel(const DT* dout, const InT* gu, int64_t N, int64_t I,
                                       OutT* dgu) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const InT* g = gu + r * 2 * I;
    for (int64_t c = int64_t(threadIdx.x) * K; c < I; c += int64_t(blockDim.x) * K) {
      float gv[K], uv[K], dv[K], dg[K], du[K];
      load_k<K>(g + c, gv);
      load_k<K>(g + I + c, uv);
      load_k<K>(dout + r * I + c, dv);
#pragma unroll
      for (int j = 0; j < K; ++j) {
        const float sig = 1.0f / (1.0f + expf(-gv[j]));
        du[j] = dv[j] * gv[j] * sig;
        dg[j] = dv[j] * uv[j] * sig * (1.0f + gv[j] * (1.0f - sig));
      }
      store_k<K>(dgu + r * 2 * I + c, dg);
      store_k<K>(dgu + r * 2 * I + I + c, du);
    }
  }
}

unsigned row_blocks(int64_t N) {
  return unsigned(std::min<int64_t>(N, 65535));
}

}  // namespace

void CudaBackendImpl::swiglu_forward(const float* gu, int64_t N, int64_t I, float* out, Use use) {
  if (N <= 0 || I <= 0) return;
  Timed t(*this, "swiglu");
  const __nv_bfloat16* gu16 = narrow_of(gu, size_t(N * 2 * I), false);
  __nv_bfloat16* narrow =
      narrow_output(out, size_t(N * I), use, {{gu, size_t(N * 2 * I) * sizeof(float)}});
  with_input(gu16, gu, [&](auto* in) {
    dispatch_out(I % 4 == 0 && aligned16(gu, out), out, narrow, [&](auto k, auto* o) {
      swiglu_forward_kernel<decltype(k)::value>
          <<<row_blocks(N), kThreads, 0, stream_>>>(in, N, I, o);
    });
  });
  AUTOTP_LAUNCHED("swiglu_forward_kernel");
}

void CudaBackendImpl::swiglu_backward(const float* dout, const float* gu, int64_t N, int64_t I,
                                      float* dgu, Use use) {
  if (N <= 0 || I <= 0) return;
  Timed t(*this, "swiglu");
  const __nv_bfloat16* gu16 = narrow_of(gu, size_t(N * 2 * I), false);
  const __nv_bfloat16* d16 = narrow_of(dout, size_t(N * I), false);
  __nv_bfloat16* narrow = narrow_output(
      dgu, size_t(N * 2 * I), use,
      {{gu, size_t(N * 2 * I) * sizeof(float)}, {dout, size_t(N * I) * sizeof(float)}});
  with_input(gu16, gu, [&](auto* g) {
    with_input(d16, dout, [&](auto* d) {
      dispatch_out(I % 4 == 0 && aligned16(gu, dgu, dout), dgu, narrow, [&](auto k, auto* o) {
        swiglu_backward_kernel<decltype(k)::value>
            <<<row_blocks(N), kThreads, 0, stream_>>>(d, g, N, I, o);
      });
    });
  });
  AUTOTP_LAUNCHED("swiglu_backward_kernel");
}

}  // namespace autotp::cuda
