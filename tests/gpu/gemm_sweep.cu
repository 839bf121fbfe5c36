// The GEMMs of one training step of the benchmark's main case (Phi-4-mini, 8 layers, 8192 tokens,
// lm_head in 4 chunks of 2048 rows), each timed as the CUDA backend runs it (cublasGemmEx,
// default algorithm) and with every algorithm cuBLASLt's heuristic offers (32 MiB workspace).
// Prints per shape the default's time, the best algorithm's time and its configuration, and the
// step's GEMM total both ways: how much choosing algorithms could save, measured before building
// it into the backend (tests/gpu/NOTES.md, session 6).
//
//   gemm_sweep [--tokens 8192] [--reps 20]
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// describe_algo(), shared with the backend's tuner; by relative path, as this tool is built
// without the library's include directory.
#include "kernels/cuda/gemm_tuner.cuh"

#define CK(x)                                                                                 \
  do {                                                                                        \
    auto e_ = (x);                                                                            \
    if (int(e_) != 0) {                                                                       \
      std::fprintf(stderr, "gemm_sweep: %s failed (%d) at line %d\n", #x, int(e_), __LINE__); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace {
// Row-major C[M,N] (+)= op(A) op(B), as CudaBackendImpl::gemm takes it; `count` per step.
struct Shape {
  const char* name;
  long M, N, K;
  bool ta, tb, acc, c16;
  int count;
};

__global__ void fill(__nv_bfloat16* x, size_t n, unsigned seed) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    x[i] = __float2bfloat16((float(h & 0xffff) / 65536.0f - 0.5f) * 0.1f);
  }
}

template <typename F>
float time_ms(F&& f, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  f();
  f();
  CK(cudaEventRecord(a));
  for (int i = 0; i < reps; ++i) f();
  CK(cudaEventRecord(b));
  CK(cudaEventSynchronize(b));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / float(reps);
}
}  // namespace

int main(int argc, char** argv) {
  long T = 8192, rows = 2048;
  int reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokens")) T = std::atol(argv[i + 1]);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--lm_rows")) rows = std::atol(argv[i + 1]);
  }
  const long H = 3072, V = 200064, L = 8, chunks = T / rows;
  // forward: x W^T; dW += dy^T x (fp32 C); dx = dy W. c16: the outputs the model keeps in bf16.
  const Shape shapes[] = {
      {"qkv fwd", T, 5120, H, false, true, false, true, int(L)},
      {"qkv dW", 5120, H, T, true, false, true, false, int(L)},
      {"qkv dx", T, H, 5120, false, false, false, false, int(L)},
      {"o fwd", T, H, H, false, true, false, false, int(L)},
      {"o dW", H, H, T, true, false, true, false, int(L)},
      {"o dx", T, H, H, false, false, false, true, int(L)},
      {"gate_up fwd", T, 16384, H, false, true, false, true, int(L)},
      {"gate_up dW", 16384, H, T, true, false, true, false, int(L)},
      {"gate_up dx", T, H, 16384, false, false, false, false, int(L)},
      {"down fwd", T, H, 8192, false, true, false, false, int(L)},
      {"down dW", H, 8192, T, true, false, true, false, int(L)},
      {"down dx", T, 8192, H, false, false, false, true, int(L)},
      {"lm_head fwd", rows, V, H, false, true, false, true, int(chunks)},
      {"lm_head dW", V, H, rows, true, false, true, false, int(chunks)},
      {"lm_head dx", rows, H, V, false, false, false, false, int(chunks)},
  };
  size_t maxA = 0, maxB = 0, maxC = 0;
  for (const Shape& s : shapes) {
    maxA = std::max(maxA, size_t(s.M * s.K));
    maxB = std::max(maxB, size_t(s.K * s.N));
    maxC = std::max(maxC, size_t(s.M * s.N));
  }
  __nv_bfloat16 *A, *B;
  float* C;
  void* ws;
  const size_t ws_bytes = 32u << 20;
  CK(cudaMalloc(&A, maxA * 2));
  CK(cudaMalloc(&B, maxB * 2));
  CK(cudaMalloc(&C, maxC * 4));
  CK(cudaMalloc(&ws, ws_bytes));
  fill<<<1024, 256>>>(A, maxA, 1);
  fill<<<1024, 256>>>(B, maxB, 2);
  CK(cudaMemset(C, 0, maxC * 4));
  cublasHandle_t h;
  cublasLtHandle_t lt;
  CK(cublasCreate(&h));
  CK(cublasLtCreate(&lt));
  std::printf(
      "| shape | M x N x K | count | default ms | TFLOP/s | best Lt ms | TFLOP/s | gain | "
      "best algorithm (heuristic rank) |\n|---|---|---|---|---|---|---|---|---|\n");
  double total_def = 0, total_best = 0, total_lt0 = 0;
  for (const Shape& s : shapes) {
    const double flop = 2.0 * s.M * s.N * s.K;
    const float alpha = 1, beta = s.acc ? 1 : 0;
    // Column-major view: C^T[N,M] = op(B)^T op(A)^T, as the backend calls it.
    const int lda = int(s.ta ? s.M : s.K), ldb = int(s.tb ? s.K : s.N);
    const cublasOperation_t opb = s.tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            opa = s.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cudaDataType_t ct = s.c16 ? CUDA_R_16BF : CUDA_R_32F;
    const float def = time_ms(
        [&] {
          CK(cublasGemmEx(h, opb, opa, int(s.N), int(s.M), int(s.K), &alpha, B, CUDA_R_16BF, ldb, A,
                          CUDA_R_16BF, lda, &beta, C, ct, int(s.N), CUBLAS_COMPUTE_32F,
                          CUBLAS_GEMM_DEFAULT));
        },
        reps);
    cublasLtMatmulDesc_t op;
    CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opb, sizeof opb));
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opa, sizeof opa));
    cublasLtMatrixLayout_t la, lb, lc;
    // Lt's A is our B (rows x cols of the stored column-major matrix), Lt's B is our A.
    CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, s.tb ? s.K : s.N, s.tb ? s.N : s.K, ldb));
    CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, s.ta ? s.M : s.K, s.ta ? s.K : s.M, lda));
    CK(cublasLtMatrixLayoutCreate(&lc, ct, s.N, s.M, s.N));
    cublasLtMatmulPreference_t pref;
    CK(cublasLtMatmulPreferenceCreate(&pref));
    CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                            &ws_bytes, sizeof ws_bytes));
    cublasLtMatmulHeuristicResult_t res[32];
    int found = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 32, res, &found));
    float best = 1e30f, lt0 = 0;
    int best_k = -1;
    for (int k = 0; k < found; ++k) {
      if (res[k].state != CUBLAS_STATUS_SUCCESS) continue;
      const float ms = time_ms(
          [&] {
            CK(cublasLtMatmul(lt, op, &alpha, B, la, A, lb, &beta, C, lc, C, lc, &res[k].algo, ws,
                              ws_bytes, 0));
          },
          reps);
      if (k == 0) lt0 = ms;
      if (ms < best) best = ms, best_k = k;
    }
    total_def += def * s.count;
    total_best += std::min(best, def) * s.count;
    total_lt0 += lt0 * s.count;
    std::printf(
        "| %s | %ld x %ld x %ld%s%s | %d | %.3f | %.0f | %.3f (rank 0: %.3f) | %.0f | %.1f%% | %s "
        "(%d of %d) |\n",
        s.name, s.M, s.N, s.K, s.acc ? " acc" : "", s.c16 ? " bf16 C" : "", s.count, def,
        flop / def * 1e-9, best, lt0, flop / best * 1e-9, 100.0 * (def - best) / def,
        best_k >= 0 ? autotp::cuda::describe_algo(res[best_k].algo).c_str() : "-", best_k, found);
    std::fflush(stdout);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
  }
  std::printf(
      "\nstep GEMM total: default %.2f ms, Lt heuristic rank 0 %.2f ms, best per shape %.2f "
      "ms (saves %.2f ms)\n",
      total_def, total_lt0, total_best, total_def - total_best);
  return 0;
}
