// RMSNorm as Phi3RMSNorm computes it (fp32; normalize, THEN multiply by the weight), one block
// per row; the fused residual add + norm of the forward; the backward's weight gradient is a
// column sum over row chunks.
#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// residual (when given) += x first; then with r = 1 / sqrt(mean_j v_j^2 + eps), v the row:
// out_j = w_j * (v_j * r), rstd = r.
__global__ void rmsnorm_forward_kernel(const float* x, float* residual, const float* w, int64_t H,
                                       float eps, float* out, float* rstd) {
  __shared__ float red[32];
  const int64_t n = blockIdx.x;
  float* o = out + n * H;
  const float* v = residual ? residual + n * H : x + n * H;
  float ss = 0.0f;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
    float vj;
    if (residual) {  // each thread re-reads below only what it wrote here
      vj = residual[n * H + j] + x[n * H + j];
      residual[n * H + j] = vj;
    } else {
      vj = v[j];
    }
    ss += vj * vj;
  }
  ss = block_sum(ss, red);
  const float r = 1.0f / sqrtf(ss / float(H) + eps);
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) o[j] = w[j] * (v[j] * r);
  if (threadIdx.x == 0) rstd[n] = r;
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

void check_rows(int64_t N, const char* op) {
  check(N <= INT32_MAX, "cuda ", op, ": ", N, " rows exceed the grid size");
}
}  // namespace

void CudaBackendImpl::rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t H,
                                      float eps, float* out, float* rstd) {
  if (N <= 0 || H <= 0) return;
  check_rows(N, "rmsnorm_forward");
  Timed t(*this, "norm+rope");
  rmsnorm_forward_kernel<<<unsigned(N), kThreads, 0, stream_>>>(x, nullptr, w, H, eps, out, rstd);
  AUTOTP_LAUNCHED("rmsnorm_forward_kernel");
}

void CudaBackendImpl::add_rmsnorm_forward(const float* x, float* residual, const float* w,
                                          int64_t N, int64_t H, float eps, float* out,
                                          float* rstd) {
  if (N <= 0 || H <= 0) return;
  check_rows(N, "add_rmsnorm_forward");
  Timed t(*this, "norm+rope");
  rmsnorm_forward_kernel<<<unsigned(N), kThreads, 0, stream_>>>(x, residual, w, H, eps, out, rstd);
  AUTOTP_LAUNCHED("rmsnorm_forward_kernel (fused add)");
}

void CudaBackendImpl::rmsnorm_backward(const float* dout, const float* x, const float* w,
                                       const float* rstd, int64_t N, int64_t H, float* dx,
                                       float* dw) {
  if (N <= 0 || H <= 0) return;
  check_rows(N, "rmsnorm_backward");
  Timed t(*this, "norm+rope");
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
