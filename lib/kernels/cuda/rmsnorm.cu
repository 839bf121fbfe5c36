// RMSNorm as Phi3RMSNorm computes it (fp32; normalize, THEN multiply by the weight), one block
// per row; the fused residual add + norm of the forward (writing the sum to a new buffer, so the
// residual stream is never copied); the backward's weight gradient is a column sum over row
// chunks.
#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// With residual given: sum = residual + x first, and v = sum; else v = x. Then with
// r = 1 / sqrt(mean_j v_j^2 + eps): out_j = w_j * (v_j * r), rstd = r. K floats per access
// (4 when H % 4 == 0 and the rows are 16-byte aligned); x is fp32 or the bf16 a GEMM wrote (a
// narrow x); out is fp32 or, for Use::Gemm and Use::Narrow, bf16.
template <int K, typename XT, typename OutT>
__global__ void rmsnorm_forward_kernel(const XT* x, const float* residual, float* sum,
                                       const float* w, int64_t H, float eps, OutT* out,
                                       float* rstd) {
  __shared__ float red[32];
  const int64_t row = int64_t(blockIdx.x) * H;
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
    if (residual)
      load_k<K>(sum + row + j, a);
    else
      load_k<K>(x + row + j, a);
    load_k<K>(w + j, g);
#pragma unroll
    for (int i = 0; i < K; ++i) a[i] = g[i] * (a[i] * r);
    store_k<K>(out + row + j, a);
  }
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// With xh = x * r, y = w * xh:  dxh_j = g_j * w_j,
//   dx_j += r * (dxh_j - xh_j * mean_k(dxh_k * xh_k))   (r depends on every x_k),
//   dw_j += sum_n g[n, j] xh[n, j].
// One pass: a block takes a chunk of rows and keeps the chunk's dw column sums in shared memory
// (column j by the thread that reads it), written to partial[chunk, j]; a second pass adds the
// chunks in order. No atomics, so the result has the same bits on every run (reproducible
// training and resume). K floats per access, as in the forward; dout fp32, or a narrow bf16
// (the input gradient a GEMM wrote). dx16, when set, receives bf16(dx) for the GEMM that reads
// dx next (the residual gradient is dy of o_proj and down_proj).
constexpr int64_t kRowsPerChunk = 8;
template <int K, typename DoutT>
__global__ void rmsnorm_backward_kernel(const DoutT* dout, const float* x, const float* w,
                                        const float* rstd, int64_t N, int64_t H, float* dx,
                                        float* partial, __nv_bfloat16* dx16) {
  extern __shared__ float dw[];  // [H]
  __shared__ float red[32];
  const int64_t n0 = int64_t(blockIdx.x) * kRowsPerChunk, n1 = min(N, n0 + kRowsPerChunk);
  const int64_t j0 = int64_t(threadIdx.x) * K, step = int64_t(blockDim.x) * K;
  for (int64_t j = j0; j < H; j += step)
#pragma unroll
    for (int i = 0; i < K; ++i) dw[j + i] = 0.0f;
  for (int64_t n = n0; n < n1; ++n) {
    const float r = rstd[n];
    const DoutT* g = dout + n * H;
    const float* xr = x + n * H;
    float dot = 0.0f;
    for (int64_t j = j0; j < H; j += step) {
      float gv[K], xv[K], wv[K];
      load_k<K>(g + j, gv);
      load_k<K>(xr + j, xv);
      load_k<K>(w + j, wv);
#pragma unroll
      for (int i = 0; i < K; ++i) {
        dot += gv[i] * wv[i] * (xv[i] * r);
        dw[j + i] += gv[i] * (xv[i] * r);
      }
    }
    dot = block_sum(dot, red) / float(H);
    float* d = dx + n * H;
    for (int64_t j = j0; j < H; j += step) {  // the row again, from cache
      float gv[K], xv[K], wv[K], dv[K];
      load_k<K>(g + j, gv);
      load_k<K>(xr + j, xv);
      load_k<K>(w + j, wv);
      load_k<K>(d + j, dv);
#pragma unroll
      for (int i = 0; i < K; ++i) dv[i] += r * (gv[i] * wv[i] - xv[i] * r * dot);
      store_k<K>(d + j, dv);
      if (dx16) store_k<K>(dx16 + n * H + j, dv);
    }
  }
  for (int64_t j = j0; j < H; j += step)
#pragma unroll
    for (int i = 0; i < K; ++i) partial[int64_t(blockIdx.x) * H + j + i] = dw[j + i];
}

// dw_j += sum_c partial[c, j]: a block takes 32 columns, its warp r sums chunks r, r + 8, ...,
// then warp 0 adds the 8 sums in warp order (a fixed order: the same bits every run).
constexpr int kSumWarps = 8;
__global__ void sum_chunks_kernel(const float* partial, int64_t chunks, int64_t H, float* dw) {
  __shared__ float sums[kSumWarps][33];
  const int c = threadIdx.x % 32, r = threadIdx.x / 32;
  const int64_t j = int64_t(blockIdx.x) * 32 + c;
  float acc = 0.0f;
  if (j < H)
    for (int64_t k = r; k < chunks; k += kSumWarps) acc += partial[k * H + j];
  sums[r][c] = acc;
  __syncthreads();
  if (r == 0 && j < H) {
    float t = 0.0f;
#pragma unroll
    for (int q = 0; q < kSumWarps; ++q) t += sums[q][c];
    dw[j] += t;
  }
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
  // The residual add's x may be narrow (o_proj's and down_proj's output).
  const __nv_bfloat16* x16 = residual ? narrow_of(x, size_t(N * H), false) : nullptr;
  __nv_bfloat16* narrow =
      narrow_output(out, size_t(N * H), use, {{x, bytes}, {residual, bytes}, {sum, bytes}});
  w = weight_f32(w, size_t(H));
  const bool vec = H % 4 == 0 && aligned16(x, w, out) && (!residual || aligned16(residual, sum));
  with_input(x16, x, [&](auto* xp) {
    dispatch_out(vec, out, narrow, [&](auto k, auto* o) {
      rmsnorm_forward_kernel<decltype(k)::value>
          <<<unsigned(N), kThreads, 0, stream_>>>(xp, residual, sum, w, H, eps, o, rstd);
    });
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
                                       float* dw, Use dx_use) {
  if (N <= 0 || H <= 0) return;
  check(N <= INT32_MAX, "cuda rmsnorm_backward: ", N, " rows exceed the grid size");
  Timed t(*this, "norm+rope");
  wrote(dw, size_t(H) * sizeof(float));
  // dx is read as well as written (it accumulates), so its bf16 copy goes to a scratch slot and
  // the fp32 stays whole.
  const __nv_bfloat16* dout16 = narrow_of(dout, size_t(N * H), false);
  __nv_bfloat16* dx16 = narrow_output(dx, size_t(N * H), dx_use,
                                      {{dx, size_t(N * H) * sizeof(float)}}, Scratch::NormGrad);
  const int64_t chunks = (N + kRowsPerChunk - 1) / kRowsPerChunk;
  const size_t smem = size_t(H) * sizeof(float);
  check(smem <= 227 * 1024, "cuda rmsnorm_backward: hidden size ", H,
        " exceeds the shared memory of a block (58112 columns)");
  auto* partial =
      static_cast<float*>(scratch(Scratch::NormPartial, size_t(chunks * H) * sizeof(float)));
  w = weight_f32(w, size_t(H));
  dispatch_k(H % 4 == 0 && aligned16(dout, x, w, dx), [&](auto k) {
    with_input(dout16, dout, [&](auto* g) {
      auto kernel = rmsnorm_backward_kernel<decltype(k)::value,
                                            std::remove_cv_t<std::remove_pointer_t<decltype(g)>>>;
      if (smem > 48 * 1024) allow_smem(kernel, smem, "cudaFuncSetAttribute(rmsnorm_backward)");
      kernel<<<unsigned(chunks), kThreads, smem, stream_>>>(g, x, w, rstd, N, H, dx, partial, dx16);
    });
  });
  AUTOTP_LAUNCHED("rmsnorm_backward_kernel");
  sum_chunks_kernel<<<unsigned((H + 31) / 32), 32 * kSumWarps, 0, stream_>>>(partial, chunks, H,
                                                                             dw);
  AUTOTP_LAUNCHED("sum_chunks_kernel");
}

}  // namespace autotp::cuda
