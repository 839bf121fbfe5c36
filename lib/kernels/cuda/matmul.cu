// GEMMs on bf16 operands with fp32 accumulation and an fp32 C (cublasGemmEx, compute 32F:
// cuBLAS runs them on the tensor cores). Weights come from the bf16 shadow of the parameters;
// other operands (activations, gradients) are converted into scratch first.
#include <climits>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
__global__ void to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y,
                               size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}
}  // namespace

void to_bf16(const float* x, __nv_bfloat16* y, size_t n, cudaStream_t stream) {
  if (!n) return;
  to_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  AUTOTP_LAUNCHED("to_bf16_kernel");
}

void CudaBackendImpl::params_changed(const float* params, size_t n) {
  if (shadow_cap_ < n) {
    device_free(shadow_);
    shadow_ = nullptr;
    shadow_cap_ = 0;
    shadow_ = static_cast<__nv_bfloat16*>(device_alloc(n * sizeof(__nv_bfloat16)));
    shadow_cap_ = n;
  }
  params_ = params;
  params_n_ = n;
  to_bf16(params, shadow_, n, stream_);
}

const __nv_bfloat16* CudaBackendImpl::bf16_operand(const float* x, size_t n, Scratch slot) {
  // Pointer comparison across unrelated buffers is done on integers (well defined).
  const auto xi = reinterpret_cast<uintptr_t>(x), pi = reinterpret_cast<uintptr_t>(params_);
  if (params_ && xi >= pi && xi + n * sizeof(float) <= pi + params_n_ * sizeof(float) &&
      (xi - pi) % sizeof(float) == 0)
    return shadow_ + (xi - pi) / sizeof(float);
  auto* y = static_cast<__nv_bfloat16*>(scratch(slot, n * sizeof(__nv_bfloat16)));
  to_bf16(x, y, n, stream_);
  return y;
}

void CudaBackendImpl::matmul(int64_t M, int64_t N, int64_t K, const float* A, bool transA,
                             const float* B, bool transB, float* C, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: C = 0 (or unchanged when accumulating)
    if (!accumulate) fill_zero(C, size_t(M * N) * sizeof(float));
    return;
  }
  check(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX, "cuda matmul: dimensions ", M, " x ", N,
        " x ", K, " exceed cuBLAS's 32-bit sizes");
  Timed t(*this, "gemm");
  const __nv_bfloat16* a = bf16_operand(A, size_t(M * K), Scratch::GemmA);
  const __nv_bfloat16* b = bf16_operand(B, size_t(K * N), Scratch::GemmB);
  // Row-major C[M,N] = op(A) op(B) is column-major C^T[N,M] = op(B)^T op(A)^T, and a row-major
  // matrix read column-major is its transpose: so cuBLAS gets (B, A) with the same trans flags
  // and the row strides as leading dimensions.
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const int lda = int(transA ? M : K), ldb = int(transB ? K : N);
  AUTOTP_CUBLAS(cublasGemmEx(cublas_, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                             transA ? CUBLAS_OP_T : CUBLAS_OP_N, int(N), int(M), int(K), &alpha, b,
                             CUDA_R_16BF, ldb, a, CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, int(N),
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace autotp::cuda
