// RMSNorm as Phi3RMSNorm computes it (fp32; normalize, THEN multiply by the weight), one block
// per row; the fused residual add + norm of the forward (writing the sum to a new buffer, so the
// residual stream is never copied); the backward's weight gradient is a column sum over row
// chunks.
#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// With residual given: sum = residual + x first, and v = sum; else v = x. Then with
// r = 1 / sqrt(mean_j v_j^2 + eps): out_j = w_j * (v_j * r), rstd = r. K floats per access
// (4 when H % 4 == 0 and the rows are 16-byte aligned); out is fp32 or, for Use::Gemm, bf16.
template <int K, typename OutT>
__global__ void rmsnorm_forward_kernel(const float* x, const float* residual, float* sum,
                                       const float* w, int64_t H, float eps, OutT* out,
                                       float* rstd) {
  __shared__ float red[32];
  const int64_t row = int64_t(blockIdx.x) * H;
  const float* v = residual ? sum + row : x + row;
  float ss = 0.0f;
  for (int64_t j = int64_t(threadIdx.x) * K; j < H; j += int64_t(blockDim.x) * K) {
    float a[K];
    load_k<K>(x + row + j, a);
    if (residual) {  // each thread re-reads below only what it wrote here
      float b[K];
      load_k<K>(residual + row + j, b);
#pragma unroll
      for (int i = 0; i < K; ++i) a[i] += b[i];
      store_k<K>(sum + row + j, a);
    }
#pragma unroll
    for (int i = 0; i < K; ++i) ss += a[i] * a[i];
  }
  ss = block_sum(ss, red);
  const float r = 1.0f / sqrtf(ss / float(H) + eps);
  for (int64_t j = int64_t(threadIdx.x) * K; j < H; j += int64_t(blockDim.x) * K) {
    float a[K], g[K];
    load_k<K>(v + j, a);
    load_k<K>(w + j, g);
#pragma unroll
    for (int i = 0; i < K; ++i) a[i] = g[i] * (a[i] * r);
    store_k<K>(out + row + j, a);
  }
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// With xh = x * r, y = w * xh:  dxh_j = g_j * w_j,
// dx_j += r * (dxh_j - xh_j * mean_k(dxh_k * xh_k))   (r depends on every x_k).
__global__ void rmsnorm_backward_dx_kernel(const float* dout, const float* x, const float* w,
                                           const float* rstd, int64_t H, float* dx) {
  __shared__ float red[32];
  const int64_t n = blockIdx.x;
  const float* xr = x + n * H;
  const float* g = dout + n * H;
  float* d = dx + n * H;
  const float r = rstd[n];
  float dot = 0.0f;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) dot += g[j] * w[j] * (xr[j] * r);
  dot = block_sum(dot, red) / float(H);
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) d[j] += r * (g[j] * w[j] - xr[j] * r * dot);
}

// dw_j += sum_n g[n, j] * x[n, j] * r[n]: each thread sums one column over a chunk of rows
// (coalesced across j) into partial[chunk, j]; a second pass adds the chunks in order. No
// atomics, so the result has the same bits on every run (reproducible training and resume).
constexpr int64_t kRowsPerChunk = 64;
__global__ void rmsnorm_backward_dw_kernel(const float* dout, const float* x, const float* rstd,
                                           int64_t N, int64_t H, float* partial) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= H) return;
  const int64_t n0 = int64_t(blockIdx.y) * kRowsPerChunk;
  const int64_t n1 = min(N, n0 + kRowsPerChunk);
  float acc = 0.0f;
  for (int64_t n = n0; n < n1; ++n) acc += dout[n * H + j] * (x[n * H + j] * rstd[n]);
  partial[int64_t(blockIdx.y) * H + j] = acc;
}

__global__ void sum_chunks_kernel(const float* partial, int64_t chunks, int64_t H, float* dw) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= H) return;
  float acc = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) acc += partial[c * H + j];
  dw[j] += acc;
}

}  // namespace

// rmsnorm_forward and add_rmsnorm_forward (residual and sum null for the former).
void CudaBackendImpl::norm_forward(const float* x, const float* residual, float* sum,
                                   const float* w, int64_t N, int64_t H, float eps, float* out,
                                   float* rstd, Use use) {
  if (N <= 0 || H <= 0) return;
  check(N <= INT32_MAX, "cuda rmsnorm_forward: ", N, " rows exceed the grid size");
  Timed t(*this, "norm+rope");
  const size_t bytes = size_t(N * H) * sizeof(float);
  if (sum) wrote(sum, bytes);
  wrote(rstd, size_t(N) * sizeof(float));
  __nv_bfloat16* narrow =
      narrow_output(out, size_t(N * H), use, {{x, bytes}, {residual, bytes}, {sum, bytes}});
  const bool vec = H % 4 == 0 && aligned16(x, w, out) && (!residual || aligned16(residual, sum));
  dispatch_out(vec, out, narrow, [&](auto k, auto* o) {
    rmsnorm_forward_kernel<decltype(k)::value>
        <<<unsigned(N), kThreads, 0, stream_>>>(x, residual, sum, w, H, eps, o, rstd);
  });
  AUTOTP_LAUNCHED("rmsnorm_forward_kernel");
}

void CudaBackendImpl::rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t H,
                                      float eps, float* out, float* rstd, Use use) {
  norm_forward(x, nullptr, nullptr, w, N, H, eps, out, rstd, use);
}

void CudaBackendImpl::add_rmsnorm_forward(const float* x, const float* residual, float* sum,
                                          const float* w, int64_t N, int64_t H, float eps,
                                          float* out, float* rstd, Use use) {
  norm_forward(x, residual, sum, w, N, H, eps, out, rstd, use);
}

void CudaBackendImpl::rmsnorm_backward(const float* dout, const float* x, const float* w,
                                       const float* rstd, int64_t N, int64_t H, float* dx,
                                       float* dw) {
  if (N <= 0 || H <= 0) return;
  check(N <= INT32_MAX, "cuda rmsnorm_backward: ", N, " rows exceed the grid size");
  Timed t(*this, "norm+rope");
  wrote(dx, size_t(N * H) * sizeof(float));
  wrote(dw, size_t(H) * sizeof(float));
  rmsnorm_backward_dx_kernel<<<unsigned(N), kThreads, 0, stream_>>>(dout, x, w, rstd, H, dx);
  AUTOTP_LAUNCHED("rmsnorm_backward_dx_kernel");
  const int64_t chunks = (N + kRowsPerChunk - 1) / kRowsPerChunk;
  check(chunks <= 65535, "cuda rmsnorm_backward: ", N, " rows exceed the grid size");
  const dim3 grid(unsigned((H + kThreads - 1) / kThreads), unsigned(chunks));
  auto* partial =
      static_cast<float*>(scratch(Scratch::NormPartial, size_t(chunks * H) * sizeof(float)));
  rmsnorm_backward_dw_kernel<<<grid, kThreads, 0, stream_>>>(dout, x, rstd, N, H, partial);
  AUTOTP_LAUNCHED("rmsnorm_backward_dw_kernel");
  sum_chunks_kernel<<<grid.x, kThreads, 0, stream_>>>(partial, chunks, H, dw);
  AUTOTP_LAUNCHED("sum_chunks_kernel");
}

}  // namespace autotp::cuda
