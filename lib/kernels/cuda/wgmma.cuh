#pragma once
// Hopper's warpgroup MMA (wgmma.mma_async, sm_90a): a warpgroup (4 warps, 128 threads) computes
// D[64 x N] (+)= A[64 x 16] B[16 x N], A from shared memory or registers, B from shared memory,
// fp32 accumulate. The tensor cores read the shared operands themselves, once per warpgroup,
// where mma.sync has each warp load its fragments through registers: that traffic is what bound
// the attention backward's dK/dV kernel on mma.sync.
//
// Register layouts (the PTX ISA's "wgmma register fragments"): warp w of the group owns rows
// 16 w .. 16 w + 15, and within them the layouts of mma.sync m16n8k16 (see attention_mma.cuh):
// the accumulator's n-tile j (8 columns) is d[4 j .. 4 j + 3] = rows g, g, g + 8, g + 8 at
// columns 8 j + 2 t, + 1 (g = lane / 4, t = lane % 4); an A operand of 16 columns is mma.sync's
// four packed pairs. So a tile computed by wgmma feeds the code written for mma.sync unchanged.
//
// Shared operands: descriptors give a tile's start, layout and two byte strides (LBO, SBO); what
// they mean depends on the layout and on whether the operand is K-major or MN-major (the
// transpose flag). sw128_offset below is the layout the attention uses; tests/gpu/wgmma_probe
// checks both it and the unswizzled core-matrix layout against the CPU.
#include <cstdint>

namespace autotp::cuda {

// The 128-byte swizzled layout (what CUTLASS's Hopper kernels use: the unswizzled one makes the
// tensor cores' reads collide in shared-memory banks): a tile of R rows x C bf16 columns is cut
// into C / 64 column blocks of R rows x 128 bytes; in each, row r's 16-byte chunk j sits at
// position j ^ (r % 8). Tiles start 1024-byte aligned. As a K-major operand a descriptor covers
// one column block (K steps of 16 advance the start by 32 bytes; SBO = 1024 between 8-row groups);
// as an MN-major one, rows are K (steps of 16 rows advance by 2048 bytes; SBO = 1024) and LBO is
// the byte stride between column blocks (R * 128).
template <int R>
__host__ __device__ constexpr uint32_t sw128_offset(int r, int c) {
  return uint32_t((c / 64) * R * 128 + r * 128 + (((c % 64) / 8) ^ (r % 8)) * 16 + (c % 8) * 2);
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define AUTOTP_WGMMA 1
#endif

// The shared-memory matrix descriptor: start address, LBO and SBO (all >> 4), no swizzle.
__device__ inline uint64_t wgmma_desc(uint32_t smem_addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((smem_addr & 0x3FFFF) >> 4) | (uint64_t((lbo & 0x3FFFF) >> 4) << 16) |
         (uint64_t((sbo & 0x3FFFF) >> 4) << 32);
}
// The same for the 128-byte swizzled layout (layout type 1 in bits 62-63).
__device__ inline uint64_t wgmma_desc_sw128(uint32_t smem_addr, uint32_t lbo, uint32_t sbo) {
  return wgmma_desc(smem_addr, lbo, sbo) | (uint64_t(1) << 62);
}

#ifdef AUTOTP_WGMMA
// Orders this thread's register writes (accumulators, A fragments) before the next wgmma.
__device__ inline void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ inline void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Waits until at most N committed groups are pending (0: all done, accumulators readable).
template <int N>
__device__ inline void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Pins registers an in-flight wgmma writes or reads: the compiler sees them as changed here, so
// it neither reads an accumulator before the wgmma_wait that completes it nor moves a write of
// an operand into a wgmma's flight (CUTLASS's warpgroup_fence_operand).
template <int N>
__device__ inline void wgmma_fence_operand(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// Shared memory written by ordinary stores is visible to wgmma (the async proxy) after this, then
// a barrier.
__device__ inline void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// The inverse of ldmatrix x4: four 8x8 b16 matrices, register i of each lane holding matrix i
// in mma.sync's fragment layout, to shared memory; lane l gives the address of row l % 8 of
// matrix l / 8.
__device__ inline void stsm4(uint32_t addr, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
               "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

// mbarriers (8 bytes of shared memory each): a phase completes after `count` arrivals, and a
// waiter names the phase by its parity (0 for the first).
__device__ inline void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ inline void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// One arrival (counted in `count`), made when every cp.async this thread issued so far has
// landed: the thread goes on without waiting for its copies.
__device__ inline void mbar_arrive_cp_async(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
__device__ inline void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// The accumulator operands of an m64nN instruction: N / 2 fp32 registers per thread, %0 on.
#define AUTOTP_WGMMA_D32_REGS                                                                   \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define AUTOTP_WGMMA_D64_REGS                                                                   \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
  "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
  "%56, %57, %58, %59, %60, %61, %62, %63}"
#define AUTOTP_WGMMA_D32(d)                                                                       \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),    \
      "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),  \
      "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),  \
      "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define AUTOTP_WGMMA_D64(d) AUTOTP_WGMMA_D32(d), AUTOTP_WGMMA_D32((d + 32))

// d[64 x 64] = (accumulate ? d : 0) + A B, A [64 x 16] and B [16 x 64] by descriptor (K-major
// unless kTransB: B stored as [16 K rows x 64 N columns]).
template <int kTransB>
__device__ inline void wgmma_m64n64k16_ss(float (&d)[32], uint64_t a, uint64_t b, bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " AUTOTP_WGMMA_D32_REGS
      ", %32, %33, p, 1, 1, 0, %35;\n}\n"
      : AUTOTP_WGMMA_D32(d)
      : "l"(a), "l"(b), "r"(int(accumulate)), "n"(kTransB));
}

// d[64 x 128] += A B, A [64 x 16] and B [16 x 128] by descriptor (each K-major unless its
// transpose flag: A stored as [16 K rows x 64 M columns], B as [16 K rows x 128 N columns]).
template <int kTransA, int kTransB>
__device__ inline void wgmma_m64n128k16_ss(float (&d)[64], uint64_t a, uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " AUTOTP_WGMMA_D64_REGS
      ", %64, %65, p, 1, 1, %67, %68;\n}\n"
      : AUTOTP_WGMMA_D64(d)
      : "l"(a), "l"(b), "r"(1), "n"(kTransA), "n"(kTransB));
}

// d[64 x 128] += A B, A [64 x 16] in registers (mma.sync's A fragment per warp), B [16 x 128] by
// descriptor (K-major unless kTransB).
template <int kTransB>
__device__ inline void wgmma_m64n128k16_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %70, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " AUTOTP_WGMMA_D64_REGS
      ", {%64, %65, %66, %67}, %68, p, 1, 1, %69;\n}\n"
      : AUTOTP_WGMMA_D64(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(kTransB), "r"(1));
}
#endif

}  // namespace autotp::cuda
