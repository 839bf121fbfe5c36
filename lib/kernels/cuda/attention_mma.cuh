#pragma once
// What the tensor-core attention kernels share (attention_tc_forward.cu, attention_tc_backward.cu):
// causal GQA attention on bf16 tensor cores (mma.sync m16n8k16, fp32 accumulate), flash-attention
// 2 style: the same math as the fp32 kernels of attention.cu (see the formulas there), with every
// tile product on tensor cores and the score tiles never leaving registers:
//   forward   S = Q K^T, online softmax, O += P V
//   dK/dV     S^T = K Q^T, dP^T = V dO^T, dS^T = P^T (dP^T - D), dV += P^T dO, dK += dS^T Q
//   dQ        dQ += dS K, from the dS the dK/dV blocks stored (or, past the dS budget,
//             recomputing S, dP and dS: two more products per tile)
// qkv is read in bf16: a narrow qkv as it is, else rounded once per call into backend scratch;
// dout likewise. Tiles travel to shared memory by cp.async (double-buffered: the next tile loads
// while this one is used). Products, the softmax and every accumulator stay fp32 (max|err| /
// max|ref| ~5e-3 against the fp32 CPU backend, where the fp32 kernels reach 1e-6). Every output
// element is written by one thread after a fixed sequence of operations: deterministic, no
// atomics.
//
// A warp owns 16 rows (queries, or keys for dK/dV) per row tile, MT row tiles (the forward's
// 128-row blocks take 2, sharing each K and V fragment). The accumulator of m16n8k16 holds, per
// lane (g = lane / 4, t = lane % 4), rows g and g + 8 at columns 2t, 2t + 1 of each 8-column
// n-tile; two n-tiles of it are, packed to bf16, exactly the A operand of the next product over
// those 16 columns (rows g, g + 8, k = 2t.., 8 + 2t..). So P and dS go from one mma to the next
// in registers, and a row's softmax statistics need only the 4 lanes of a quad (two shuffles).
// Shared tiles are [rows][HD + 8] bf16: the 16 bytes of padding put the 8 rows that one
// ldmatrix phase reads on 8 distinct bank groups for every HD here (row stride = 16 B mod 128).
// Rows past T are loaded as zeros; the causal mask (and i < T in dK/dV) is compiled only into
// the variant of a step that runs on the tiles crossing the diagonal or T.
//
// Work balance (causal rows differ in length): blocks start longest first; a dK/dV block splits
// its steps between two warp groups; where dS is recomputed the backward is one launch whose dQ
// blocks fill the SMs that the long dK/dV blocks leave idle.
//
// On Hopper (sm_90a, head dim 128) the forward, dK/dV and dQ (from the stored dS) run the same
// steps on warpgroup MMA instead (wgmma.cuh; the tiles section at the end of this file): a
// warpgroup's 64 rows are four warps' 16 in the layout above, so the elementwise code is shared
// in form, and the tensor cores read Q, K, V, dO and dS from shared memory once per warpgroup.
// Their loop (pipeline_mbar) paces each warpgroup by mbarriers on the shared tiles, not by a
// block barrier, and issues the next tiles' loads after a step's products.
#include <algorithm>
#include <cstdlib>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace autotp::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kBc = 64;  // rows of a streamed key tile (forward, dQ)

// ---------------------------------------------------------------- PTX wrappers
// Shared memory is addressed by 32-bit shared-window addresses (what ldmatrix and cp.async
// take), so that tile offsets fold into the instructions' immediates.

__device__ inline uint32_t smem_u32(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, bypassing registers; zeros when !valid (src is then not read).
__device__ inline void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ inline void cp_async4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0)
               : "memory");
}
__device__ inline void cp_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ inline void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
// Barrier of the N threads of warp group g (0 or 1), barrier ids 1 and 2 (0 is
// __syncthreads'); constant ids let ptxas reserve only those.
template <int N>
__device__ inline void group_sync(int g) {
  if (g == 0)
    asm volatile("bar.sync 1, %0;\n" ::"n"(N) : "memory");
  else
    asm volatile("bar.sync 2, %0;\n" ::"n"(N) : "memory");
}
// Four 8x8 b16 matrices; lane l gives the address of row l % 8 of matrix l / 8 and receives, of
// each matrix, row l / 4 at columns 2 (l % 4), +1 (.trans: column l / 4 at rows 2 (l % 4), +1).
__device__ inline void ldsm4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ inline void ldsm4t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// c[16x8] += a[16x16] b[16x8], bf16 in, fp32 accumulate.
__device__ inline void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ inline uint32_t pack_bf16(float lo, float hi) {  // lo in the low half (lower column)
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ inline float ex2(float x) {  // 2^x; ex2(-inf) = 0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ inline float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// ---------------------------------------------------------------- tiles and products

template <int HD>
struct Hd {
  static_assert(HD % 16 == 0, "tensor-core attention needs head_dim % 16 == 0");
  static constexpr int LDS = HD + 8;                    // bf16 row stride of a shared tile
  static constexpr int KD = HD / 16;                    // k-steps over head dims
  static constexpr int ND = HD / 8;                     // n-tiles over head dims
  static constexpr uint32_t kRow = sizeof(bf16) * LDS;  // bytes
};

// Lane offsets (bytes) into a shared tile, to add to the tile's 16-row or 16-column origin:
// off_a serves A operands (16 rows x 16 k) and .trans B operands (16 k rows x 16 n columns),
// off_b B operands stored as [n][k] (two n-tiles of 8 rows x 16 k). See ldsm4.
template <int HD>
__device__ inline uint32_t off_a(int lane) {
  return ((lane & 15) * Hd<HD>::LDS + (lane >> 4) * 8) * 2;
}
template <int HD>
__device__ inline uint32_t off_b(int lane) {
  return (((lane & 7) + (lane >> 4) * 8) * Hd<HD>::LDS + ((lane >> 3) & 1) * 8) * 2;
}

// Rows [r0, r0 + R) of one head (bf16, row stride ld; zeros from row T on) -> the tile at s, by
// cp.async from the NT threads t of a group (the caller commits).
template <int HD, int R, int NT>
__device__ void load_tile(uint32_t s, const bf16* __restrict__ src, int64_t ld, int64_t r0,
                          int64_t T, int t) {
  constexpr int C = HD / 8, RS = NT / C;  // 16-byte chunks per row, rows per round
  static_assert(NT % C == 0, "whole rows per round");
  const int r = t / C, c = t % C;
#pragma unroll
  for (int k = 0; k < (R + RS - 1) / RS; ++k) {
    const int rr = r + k * RS;
    if (R % RS != 0 && rr >= R) break;
    const bool valid = r0 + rr < T;
    cp_async16(s + rr * Hd<HD>::kRow + c * 16, src + (valid ? r0 + rr : 0) * ld + c * 8, valid);
  }
}

// Key tile kt of K and V (rows kt * BC on, zeros from T on) -> buffer kt & 1 of Ks and Vs, by
// cp.async from all NT threads (the caller commits).
template <int HD, int BC, int NT>
__device__ __forceinline__ void load_kv_tiles(uint32_t Ks, uint32_t Vs, const bf16* kg,
                                              const bf16* vg, int64_t ld, int kt, int64_t T) {
  const uint32_t off = (kt & 1) * BC * Hd<HD>::kRow;
  load_tile<HD, BC, NT>(Ks + off, kg, ld, int64_t(kt) * BC, T, threadIdx.x);
  load_tile<HD, BC, NT>(Vs + off, vg, ld, int64_t(kt) * BC, T, threadIdx.x);
}

// N floats of src from index i0 (zeros from index T on) -> s, by cp.async.
template <int N, int NT>
__device__ void load_vec(uint32_t s, const float* __restrict__ src, int64_t i0, int64_t T, int t) {
  const int64_t n = T - i0;
#pragma unroll
  for (int k = 0; k < (N + NT - 1) / NT; ++k) {
    const int e = t + k * NT;
    if (N % NT != 0 && e >= N) break;
    const bool valid = e < n;
    cp_async4(s + 4 * e, valid ? src + i0 + e : src, valid);
  }
}

// The loop every kernel runs: iteration it may use what load(it) put in shared memory, while
// load(it + 1) is in flight; sync() is the barrier of the threads that share the buffers.
// load(0) was issued and committed by the caller.
template <typename Load, typename Body, typename Sync>
__device__ __forceinline__ void pipeline(int n, Load&& load, Body&& body, Sync&& sync) {
  for (int it = 0; it < n; ++it) {
    if (it + 1 < n) {
      load(it + 1);
      cp_commit();
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    sync();
    body(it);
    sync();  // the buffer of `it` is refilled by load(it + 2)
  }
}

#ifdef AUTOTP_WGMMA
// The loop of the wgmma kernels, whose warpgroups share the loaded tiles but not a barrier:
// kStages buffers, load(it) issued kStages - 1 iterations ahead by every thread of the block (NT),
// each buffer with two mbarriers of NT arrivals at `bars` (2 kStages x 8 bytes, initialized
// here): full[s], on which each thread's copies arrive when they land (cp.async.mbarrier.arrive:
// no thread waits for its own copies), and empty[s], on which each thread arrives when done
// reading. A warpgroup waits only for the buffer it reads and, before refilling one, for that
// buffer's last readers, so the warpgroups drift apart: one's elementwise work (softmax, P^T,
// dS^T) runs while the other's products hold the tensor cores, where a block barrier per step
// kept them in phase, both computing while the tensor cores idled (dK/dV 0.640 -> 0.527 ms per
// layer). load(it, buf) and body(it, buf, next) get the iteration's buffer, buf = it % kStages
// (the loop owns the numbering); body issues its products, then calls next() (every thread,
// once), which issues load(it + kStages - 1): the loads' address arithmetic runs while the
// tensor cores work.
// No proxy fence between the copies and the wgmmas that read them: the mbarrier's completion
// orders them, as in CUTLASS's cp.async GMMA mainloops.
template <int kStages, int NT, typename Load, typename Body>
__device__ __forceinline__ void pipeline_mbar(int n, uint32_t bars, Load&& load, Body&& body) {
  constexpr int kAhead = kStages - 1;
  auto full = [&](int it) { return bars + 8 * (it % kStages); };
  auto empty = [&](int it) { return bars + 8 * (kStages + it % kStages); };
  if (threadIdx.x == 0)
    for (int s = 0; s < 2 * kStages; ++s) mbar_init(bars + 8 * s, NT);
  __syncthreads();
  auto issue = [&](int it) {
    if (it >= kStages) mbar_wait(empty(it), (it / kStages - 1) & 1);
    load(it, uint32_t(it % kStages));
    mbar_arrive_cp_async(full(it));
  };
  for (int it = 0; it < kAhead && it < n; ++it) issue(it);
  for (int it = 0; it < n; ++it) {
    mbar_wait(full(it), (it / kStages) & 1);
    body(it, uint32_t(it % kStages), [&] {
      if (it + kAhead < n) issue(it + kAhead);
    });
    mbar_arrive(empty(it));
  }
}
#endif

// Calls f(std::true_type) when part holds, else f(std::false_type): the tiles that cross the
// diagonal (or T) get the masking code, the others none.
template <typename F>
__device__ __forceinline__ void with_part(bool part, F&& f) {
  if (part)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// c[m][j] += a[m] (f[0], f[1]) and c[m][j + 1] += a[m] (f[2], f[3]) for the MT row tiles: the
// two n-tiles of one ldmatrix x4 against every A fragment.
template <int MT, int N>
__device__ __forceinline__ void mma_pair(float (&c)[MT][N][4], int j, const uint32_t (&a)[MT][4],
                                         const uint32_t (&f)[4]) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    mma(c[mt][j], a[mt], f[0], f[1]);
    mma(c[mt][j + 1], a[mt], f[2], f[3]);
  }
}

// s[m][n] += A_m B^T over the head dims: A_m the m-th 16 rows of the warp (a_of(m, kd, frag)
// gives the A fragment of head dims [16 kd, 16 kd + 16)), B the NB * 8 rows of the tile at b
// (b includes off_b); each B fragment serves the MT row tiles. With kPart only column pairs
// [16 lo, 16 hi) are computed (the caller masks the others).
template <int HD, int MT, int NB, bool kPart, typename AOf>
__device__ __forceinline__ void mma_abt_m(float (&s)[MT][NB][4], AOf&& a_of, uint32_t b, int lo,
                                          int hi) {
  static_assert(NB % 2 == 0, "n-tiles are read in pairs");
#pragma unroll
  for (int kd = 0; kd < Hd<HD>::KD; ++kd) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) a_of(mt, kd, a[mt]);
#pragma unroll
    for (int nb = 0; nb < NB; nb += 2) {
      if (kPart && (nb / 2 < lo || nb / 2 >= hi)) continue;
      uint32_t f[4];
      ldsm4(f, b + nb * 8 * Hd<HD>::kRow + kd * 32);
      mma_pair(s, nb, a, f);
    }
  }
}
template <int HD, int NB, bool kPart, typename AOf>
__device__ __forceinline__ void mma_abt(float (&s)[NB][4], AOf&& a_of, uint32_t b, int lo, int hi) {
  mma_abt_m<HD, 1, NB, kPart>(
      reinterpret_cast<float(&)[1][NB][4]>(s), [&](int, int kd, uint32_t(&f)[4]) { a_of(kd, f); },
      b, lo, hi);
}

// acc[m] += P_m X: P_m the m-th 16 rows of the warp x NB * 8 columns in accumulator layout (as
// left by mma_abt), X the tile at x whose rows are P's columns (x includes off_a); with kPart
// P's column pairs outside [16 lo, 16 hi) are zero and skipped.
template <int HD, int MT, int NB, bool kPart>
__device__ __forceinline__ void mma_px_m(float (&acc)[MT][Hd<HD>::ND][4],
                                         const float (&p)[MT][NB][4], uint32_t x, int lo, int hi) {
#pragma unroll
  for (int kk = 0; kk < NB / 2; ++kk) {
    if (kPart && (kk < lo || kk >= hi)) continue;
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      a[mt][0] = pack_bf16(p[mt][2 * kk][0], p[mt][2 * kk][1]);
      a[mt][1] = pack_bf16(p[mt][2 * kk][2], p[mt][2 * kk][3]);
      a[mt][2] = pack_bf16(p[mt][2 * kk + 1][0], p[mt][2 * kk + 1][1]);
      a[mt][3] = pack_bf16(p[mt][2 * kk + 1][2], p[mt][2 * kk + 1][3]);
    }
#pragma unroll
    for (int dn = 0; dn < Hd<HD>::ND; dn += 2) {
      uint32_t f[4];
      ldsm4t(f, x + kk * 16 * Hd<HD>::kRow + dn * 16);
      mma_pair(acc, dn, a, f);
    }
  }
}
template <int HD, int NB, bool kPart>
__device__ __forceinline__ void mma_px(float (&acc)[Hd<HD>::ND][4], const float (&p)[NB][4],
                                       uint32_t x, int lo, int hi) {
  mma_px_m<HD, 1, NB, kPart>(reinterpret_cast<float(&)[1][Hd<HD>::ND][4]>(acc),
                             reinterpret_cast<const float(&)[1][NB][4]>(p), x, lo, hi);
}

// dst[i, :HD] = mul * acc for the lane's rows i0 (elements 0, 1) and i0 + 8 (2, 3) below T;
// dst fp32, or bf16 (rounded to nearest even, as to_bf16 does).
__device__ inline void store2(float* p, float x, float y) {
  *reinterpret_cast<float2*>(p) = make_float2(x, y);
}
__device__ inline void store2(bf16* p, float x, float y) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(x, y);
}
template <int HD, typename OutT>
__device__ void store_rows(const float (&acc)[Hd<HD>::ND][4], OutT* __restrict__ dst, int64_t ld,
                           int64_t i0, int64_t T, float mul0, float mul1) {
  const int c = 2 * (threadIdx.x % 4);
#pragma unroll
  for (int dn = 0; dn < Hd<HD>::ND; ++dn) {
    if (i0 < T) store2(dst + i0 * ld + dn * 8 + c, acc[dn][0] * mul0, acc[dn][1] * mul0);
    if (i0 + 8 < T) store2(dst + (i0 + 8) * ld + dn * 8 + c, acc[dn][2] * mul1, acc[dn][3] * mul1);
  }
}
// An output the host chose at run time to be fp32, or bf16 where `narrow` is set (a narrow
// output: kernels/backend.hpp).
struct Out {
  float* f32;
  bf16* narrow;
};
// store_rows into element offset `off` of either.
template <int HD>
__device__ void store_rows(const float (&acc)[Hd<HD>::ND][4], const Out& o, int64_t off, int64_t ld,
                           int64_t i0, int64_t T, float mul0, float mul1) {
  if (o.narrow)
    store_rows<HD>(acc, o.narrow + off, ld, i0, T, mul0, mul1);
  else
    store_rows<HD>(acc, o.f32 + off, ld, i0, T, mul0, mul1);
}

// Block `blk` of `nblk` as (tile, head, batch), ordered so that the heaviest tiles of every
// (head, batch) start first and the light ones fill the tail.
struct Work {
  int64_t tile;
  int h, b;
};
// The grid covers the (batch, head) units [u0, u0 + nblk / ntiles) of b * heads + h.
__device__ inline Work decode(int64_t blk, int64_t nblk, int heads, int64_t ntiles,
                              bool last_heaviest, int64_t u0 = 0) {
  const int64_t per = nblk / ntiles;  // units
  const int64_t t = blk / per, u = u0 + blk % per;
  return {last_heaviest ? ntiles - 1 - t : t, int(u % heads), int(u / heads)};
}

// ---------------------------------------------------------------- input passes

// dst[r, c] = bf16(src[r, col0 + c]) for c < ncols (a multiple of 8): 8 values per thread.
__global__ void to_bf16_cols_kernel(const float* __restrict__ src, int64_t ld, int64_t col0,
                                    int64_t ncols, int64_t rows, bf16* __restrict__ dst) {
  const int64_t chunks = ncols / 8;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks;
         c += int64_t(gridDim.x) * blockDim.x) {
      const float4* s = reinterpret_cast<const float4*>(src + r * ld + col0 + c * 8);
      const float4 x = s[0], y = s[1];
      *reinterpret_cast<uint4*>(dst + r * ncols + c * 8) = make_uint4(
          pack_bf16(x.x, x.y), pack_bf16(x.z, x.w), pack_bf16(y.x, y.y), pack_bf16(y.z, y.w));
    }
}

inline void to_bf16_cols(const float* src, int64_t ld, int64_t col0, int64_t ncols, int64_t rows,
                         bf16* dst, cudaStream_t st) {
  constexpr int kT = 128;
  const int64_t chunks = ncols / 8;
  const dim3 grid(unsigned(std::min<int64_t>((chunks + kT - 1) / kT, 65535)),
                  unsigned(std::min<int64_t>(rows, 65535)));
  to_bf16_cols_kernel<<<grid, kT, 0, st>>>(src, ld, col0, ncols, rows, dst);
  AUTOTP_LAUNCHED("to_bf16_cols_kernel");
}

// Blocks of one kernel's part of the grid: row tiles x heads x batch.
inline int64_t blocks(int64_t T, int rows, int64_t heads, int64_t B) {
  return (T + rows - 1) / rows * heads * B;
}
inline unsigned grid_size(int64_t n) {
  check(n <= INT32_MAX, "cuda attention: ", n, " blocks exceed the grid size");
  return unsigned(n);
}

using TcDims = HeadDims<16, 32, 64, 128>;

// ---------------------------------------------------------------- wgmma tiles (sm_90a)
// The kernels on Hopper's warpgroup MMA (wgmma.cuh) keep their tiles of 64 rows x kWgHd head
// dims in the 128-byte swizzled layout (the unswizzled core-matrix layout measured slower than
// mma.sync: 18.4 against 17.0 ms of attention per step, the swizzled one 14.5). A warpgroup's
// product then reads a tile as a K-major operand (S = Q K^T: head dims are K) or, transposed, as
// an MN-major one (O += P V: the tile's rows are K).
constexpr int kWgHd = 128;                    // Phi-4's head dim, the one compiled
constexpr uint32_t kWgTile = 64 * kWgHd * 2;  // bytes of a 64-row tile
static_assert(kWgTile % 1024 == 0, "swizzled tiles stay 1024-byte aligned");

// Rows [r0, r0 + 64) of one head (bf16, row stride ld; zeros from row T on) -> the tile at s, by
// cp.async from the NT threads t of a group: 8 consecutive threads take the 8 chunks of 128
// bytes of a row, which the swizzle puts on distinct banks. One 64-bit product per tile and a
// 32-bit offset per chunk (the kernels run this every step: 64-bit row arithmetic per chunk was
// a third of the dK/dV kernel's instructions).
template <int NT>
__device__ void load_tile_wg(uint32_t s, const bf16* __restrict__ src, int64_t ld, int64_t r0,
                             int64_t T, int t) {
  constexpr int R = 64, C = kWgHd / 8;
  static_assert((R * C) % NT == 0, "whole rounds");
  const bf16* base = src + r0 * ld;
  const int rows = int(max(int64_t(0), min(int64_t(R), T - r0))), ld32 = int(ld);
#pragma unroll
  for (int k = 0; k < R * C / NT; ++k) {
    const int q = t + k * NT, r = q / 8 % R, c = q % 8 + q / (8 * R) * 8;
    const bool valid = r < rows;
    cp_async16(s + sw128_offset<R>(r, 8 * c), valid ? base + (r * ld32 + c * 8) : src, valid);
  }
}

// The calling thread's warpgroup, as a value the compiler knows to be warp-uniform (a shuffle
// from lane 0, as CUTLASS's canonical_warp_group_idx): the descriptors derived from it then live
// in uniform registers, where from threadIdx.x / 128 each product's descriptor was moved there
// (R2UR) one at a time.
__device__ inline int warpgroup_uniform() {
  return __shfl_sync(0xffffffffu, int(threadIdx.x) / 128, 0);
}

// Descriptors of the tile at s, as a K-major operand (S = Q K^T: head dims are K) or an MN-major
// one (O += P V: the tile's rows are K); then K step kk from either: head dims [16 kk, 16 kk + 16)
// of the K-major tile, rows [16 kk, 16 kk + 16) of the MN-major one. The start address sits in
// the descriptor's low bits (>> 4) and a tile's steps stay inside the shared window, so a step is
// one add (building each step's descriptor anew cost a dozen instructions per product).
__device__ inline uint64_t desc_k(uint32_t s) {
  return wgmma_desc_sw128(s, 16, 1024);
}
__device__ inline uint64_t desc_mn(uint32_t s) {
  return wgmma_desc_sw128(s, kWgTile / 2, 1024);
}
__device__ inline uint64_t desc_k_at(uint64_t d, int kk) {
  return d + uint64_t(((kk / 4) * kWgTile / 2 + (kk % 4) * 32) >> 4);
}
__device__ inline uint64_t desc_mn_at(uint64_t d, int kk) {
  return d + uint64_t((kk * 16 * 128) >> 4);
}

// Column pairs [16 kk, 16 kk + 16) of a tile in accumulator layout as an A fragment.
template <int NB>
__device__ inline void a_frag(const float (&x)[NB][4], int kk, uint32_t (&f)[4]) {
  f[0] = pack_bf16(x[2 * kk][0], x[2 * kk][1]);
  f[1] = pack_bf16(x[2 * kk][2], x[2 * kk][3]);
  f[2] = pack_bf16(x[2 * kk + 1][0], x[2 * kk + 1][1]);
  f[3] = pack_bf16(x[2 * kk + 1][2], x[2 * kk + 1][3]);
}

// Whether the kernels on wgmma run: built for sm_90a (AUTOTP_CUDA_SM90A), on an sm_90 device,
// at head dim kWgHd, unless AUTOTP_ATTN_WGMMA=0 (the mma.sync kernels, e.g. to compare).
inline bool wgmma_attention(int64_t hd) {
#ifdef AUTOTP_CUDA_SM90A
  static const bool on = [] {
    const char* e = std::getenv("AUTOTP_ATTN_WGMMA");
    int dev = 0, major = 0, minor = 0;
    AUTOTP_CUDA(cudaGetDevice(&dev));
    AUTOTP_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    AUTOTP_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    return major == 9 && minor == 0 && !(e && std::string(e) == "0");
  }();
  return on && hd == kWgHd;
#else
  (void)hd;
  return false;
#endif
}

}  // namespace

}  // namespace autotp::cuda
