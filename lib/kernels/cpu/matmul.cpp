// GEMM through OpenBLAS: C[M,N] (+)= op(A)[M,K] @ op(B)[K,N], row-major.
#include <cblas.h>

#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

void CpuBackend::matmul(int64_t M, int64_t N, int64_t K, const float* A, bool transA,
                        const float* B, bool transB, float* C, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: C = 0 (or unchanged when accumulating)
    if (!accumulate) fill_zero(C, size_t(M * N) * sizeof(float));
    return;
  }
  // Row strides of the stored matrices: A is [M,K] or [K,M], B is [K,N] or [N,K].
  const int64_t lda = transA ? M : K, ldb = transB ? K : N;
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), 1.0f, A, int(lda), B, int(ldb), accumulate ? 1.0f : 0.0f, C,
              int(N));
}

}  // namespace autotp

namespace autotp {

void CpuBackend::set_threads(int n) {
  openblas_set_num_threads(n);
}

}  // namespace autotp
