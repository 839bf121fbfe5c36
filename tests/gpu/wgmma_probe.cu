// Checks the wgmma wrappers of lib/kernels/cuda/wgmma.cuh against the CPU on one warpgroup: the
// shared-operand product (both operands K-major, as S^T = K Q^T uses it) and the register-A
// product with an MN-major (transposed) B (as dV += P^T dO uses it), for each assignment of the
// tile strides to the descriptor's LBO and SBO. Exits non-zero when a layout the kernels use
// does not match. A diagnosis tool, not a ctest test (it needs the GPU): the kernel test
// (test_cuda_backend) checks the attention that uses these.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cuda/wgmma.cuh"

using bf16 = __nv_bfloat16;
using namespace autotp::cuda;

namespace {

__device__ uint32_t smem_addr(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}
__device__ uint32_t pack(bf16 lo, bf16 hi) {
  const __nv_bfloat162 v{lo, hi};
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Byte offset of element (r, c) of an unswizzled core-matrix tile with C columns: 8 x 8 core
// matrices (8 rows x 16 bytes, 128 contiguous bytes each), row-major over the tile.
template <int C>
__device__ constexpr uint32_t cm_offset(int r, int c) {
  return uint32_t((r / 8) * (C / 8) * 128 + (c / 8) * 128 + (r % 8) * 16 + (c % 8) * 2);
}

__device__ uint32_t off(bool sw, int r, int c) {
  return sw ? sw128_offset<64>(r, c) : cm_offset<128>(r, c);
}
__device__ uint64_t desc(bool sw, uint32_t a, uint32_t lbo, uint32_t sbo) {
  return sw ? wgmma_desc_sw128(a, lbo, sbo) : wgmma_desc(a, lbo, sbo);
}

// D[64 x 64] = A[64 x 128] B[64 x 128]^T (sw: the 128-byte swizzled layout).
__global__ void probe_ss(const bf16* A, const bf16* B, float* D, uint32_t lbo, uint32_t sbo,
                         bool sw) {
#ifdef AUTOTP_WGMMA
  __shared__ __align__(1024) unsigned char As[64 * 128 * 2], Bs[64 * 128 * 2];
  for (int i = threadIdx.x; i < 64 * 128; i += 128) {
    *reinterpret_cast<bf16*>(As + off(sw, i / 128, i % 128)) = A[i];
    *reinterpret_cast<bf16*>(Bs + off(sw, i / 128, i % 128)) = B[i];
  }
  fence_proxy_async();
  __syncthreads();
  float d[32] = {};
  wgmma_fence();
  for (int kk = 0; kk < 8; ++kk) {
    const uint32_t k = sw ? (kk / 4) * 64 * 128 + (kk % 4) * 32 : kk * 256;
    wgmma_m64n64k16_ss<0>(d, desc(sw, smem_addr(As) + k, lbo, sbo),
                          desc(sw, smem_addr(Bs) + k, lbo, sbo), kk > 0);
  }
  wgmma_commit();
  wgmma_wait<0>();
  const int w = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  for (int j = 0; j < 8; ++j)
    for (int e = 0; e < 4; ++e)
      D[(16 * w + g + 8 * (e / 2)) * 64 + 8 * j + 2 * t + e % 2] = d[4 * j + e];
#endif
}

// D[64 x 128] = P[64 x 64] X[64 x 128], P from registers, X MN-major in shared memory.
__global__ void probe_rs(const bf16* P, const bf16* X, float* D, uint32_t lbo, uint32_t sbo,
                         bool sw) {
#ifdef AUTOTP_WGMMA
  __shared__ __align__(1024) unsigned char Xs[64 * 128 * 2];
  for (int i = threadIdx.x; i < 64 * 128; i += 128)
    *reinterpret_cast<bf16*>(Xs + off(sw, i / 128, i % 128)) = X[i];
  fence_proxy_async();
  __syncthreads();
  const int w = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  const int r0 = 16 * w + g, r1 = r0 + 8;
  float d[64] = {};
  uint32_t a[4][4];
  for (int kk = 0; kk < 4; ++kk) {
    const int c = 16 * kk + 2 * t;
    a[kk][0] = pack(P[r0 * 64 + c], P[r0 * 64 + c + 1]);
    a[kk][1] = pack(P[r1 * 64 + c], P[r1 * 64 + c + 1]);
    a[kk][2] = pack(P[r0 * 64 + c + 8], P[r0 * 64 + c + 9]);
    a[kk][3] = pack(P[r1 * 64 + c + 8], P[r1 * 64 + c + 9]);
  }
  wgmma_fence();
  for (int kk = 0; kk < 4; ++kk)
    wgmma_m64n128k16_rs<1>(d, a[kk], desc(sw, smem_addr(Xs) + off(sw, 16 * kk, 0), lbo, sbo));
  wgmma_commit();
  wgmma_wait<0>();
  for (int j = 0; j < 16; ++j)
    for (int e = 0; e < 4; ++e)
      D[(16 * w + g + 8 * (e / 2)) * 128 + 8 * j + 2 * t + e % 2] = d[4 * j + e];
#endif
}

std::vector<bf16> rnd(size_t n, std::mt19937& g) {
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<bf16> v(n);
  for (auto& x : v) x = __float2bfloat16(u(g));
  return v;
}

template <typename T>
T* up(const std::vector<T>& h) {
  T* d;
  cudaMalloc(&d, h.size() * sizeof(T));
  cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}

double max_err(const std::vector<float>& got, const std::vector<double>& ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e = std::fmax(e, std::fabs(got[i] - ref[i]));
    m = std::fmax(m, std::fabs(ref[i]));
  }
  return e / m;
}

}  // namespace

int main() {
  std::mt19937 gen(1);
  auto A = rnd(64 * 128, gen), B = rnd(64 * 128, gen), P = rnd(64 * 64, gen),
       X = rnd(64 * 128, gen);
  std::vector<double> ss(64 * 64, 0.0), rs(64 * 128, 0.0);
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j)
      for (int k = 0; k < 128; ++k)
        ss[i * 64 + j] +=
            double(__bfloat162float(A[i * 128 + k])) * __bfloat162float(B[j * 128 + k]);
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 128; ++j)
      for (int k = 0; k < 64; ++k)
        rs[i * 128 + j] +=
            double(__bfloat162float(P[i * 64 + k])) * __bfloat162float(X[k * 128 + j]);
  bf16 *dA = up(A), *dB = up(B), *dP = up(P), *dX = up(X);
  float* dD;
  cudaMalloc(&dD, 64 * 128 * sizeof(float));
  struct Variant {
    const char* name;
    bool sw;
    uint32_t lbo, sbo;
  };
  // The expected assignment first in each list: a wrong one reads past the tile, and the illegal
  // address ends the context (CUTLASS's convention: LBO along K and SBO along M/N unswizzled;
  // swizzled, SBO between 8-row groups and, MN-major, LBO between 64-column blocks).
  const Variant ss_variants[] = {{"unswizzled", false, 128, 2048},
                                 {"sw128", true, 16, 1024},
                                 {"unswizzled", false, 2048, 128}};
  const Variant rs_variants[] = {{"unswizzled", false, 2048, 128},
                                 {"sw128", true, 8192, 1024},
                                 {"unswizzled", false, 128, 2048}};
  // Runs one variant through `launch` (the kernel's launch for that variant), compares D with
  // ref; true when it matched (no error, rel err <= 1e-5).
  const auto check = [&](const char* what, const Variant& v, const std::vector<double>& ref,
                         auto launch) {
    std::vector<float> h(ref.size());
    cudaMemset(dD, 0xFF, 64 * 128 * sizeof(float));
    launch(v);
    const cudaError_t e = cudaDeviceSynchronize();
    cudaMemcpy(h.data(), dD, h.size() * sizeof(float), cudaMemcpyDeviceToHost);
    const double err = max_err(h, ref);
    std::printf("%s %-10s lbo %4u sbo %4u: %s rel err %.3e\n", what, v.name, v.lbo, v.sbo,
                cudaGetErrorString(e), err);
    return e == cudaSuccess && err <= 1e-5;
  };
  // The layouts the kernels use (the first two of each list) must match; the third is the
  // wrong assignment, shown for the record.
  bool ok = true;
  for (int i = 0; i < 3; ++i)
    ok &= check("ss K-major ", ss_variants[i], ss,
                [&](const Variant& v) { probe_ss<<<1, 128>>>(dA, dB, dD, v.lbo, v.sbo, v.sw); }) ||
          i == 2;
  for (int i = 0; i < 3; ++i)
    ok &= check("rs MN-major", rs_variants[i], rs,
                [&](const Variant& v) { probe_rs<<<1, 128>>>(dP, dX, dD, v.lbo, v.sbo, v.sw); }) ||
          i == 2;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
