// Causal GQA attention on bf16 tensor cores (WMMA 16x16x16, fp32 accumulate), flash-attention 2
// style: the same math and block structure as the fp32 kernels of attention.cu (see the
// formulas there), with every tile product on tensor cores:
//   forward   S = Q K^T, O += P V
//   dQ        S = Q K^T, dP = dO V^T, dQ += dS K
//   dK/dV     S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q
// Operands are rounded to bf16 when a tile is staged in shared memory; products, the online
// softmax and every accumulator stay fp32 (max|err| / max|ref| ~4e-3 against fp64, where the
// fp32 kernels reach 1e-5).
//
// A block owns 64 rows (queries, or keys for dK/dV) of one (batch, head) and runs 4 warps, each
// owning 16 of them. The streamed tile is 64 rows too. Score tiles go from the accumulator
// fragments to a per-warp fp32 scratch [16][68] in shared memory, where 2 lanes per row (lane
// = 2 r + half, columns c = 2 cc + half) do the row-wise softmax; the weights return as bf16
// [16][72] operands. Padded strides (+8 bf16, +4 fp32) keep rows on different banks and satisfy
// the WMMA rules (ldm a multiple of 16 bytes, tile pointers 32-byte aligned).
// Rows past T are loaded as zeros and masked by index, so no tail case exists; sub-tiles of 16
// that the causal mask empties entirely are skipped.
#include <mma.h>

#include <cstdlib>

#include "kernels/cuda/attention.cuh"

namespace autotp::cuda {

namespace {

using namespace nvcuda;
using bf16 = __nv_bfloat16;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBt = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;  // X^T
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

constexpr int kRows = 64, kWarps = 4, kTcThreads = kWarps * 32, kSub = 16;
constexpr int kLdS = kRows + 4;  // fp32 score scratch stride
constexpr int kLdP = kRows + 8;  // bf16 weight stride
constexpr size_t kScoreBytes = sizeof(float) * kRows * kLdS;
constexpr size_t kWeightBytes = sizeof(bf16) * kRows * kLdP;

template <int HD>
struct Tc {
  static_assert(HD % 16 == 0, "tensor-core attention needs head_dim % 16 == 0");
  static constexpr int LD = HD + 8;  // bf16 row stride of a staged tile
  static constexpr int KD = HD / kSub;
  static constexpr size_t kTileBytes = sizeof(bf16) * kRows * LD;
};

// A block's shared memory in order: NT staged bf16 tiles [64][LD], the fp32 score scratch
// [64][kLdS], NW bf16 weight tiles [64][kLdP], NR fp32 values per row. Every part is a multiple
// of 32 bytes, so every tile pointer meets WMMA's alignment.
template <int HD, int NT, int NW, int NR>
struct Smem {
  static constexpr size_t kBytes =
      NT * Tc<HD>::kTileBytes + kScoreBytes + NW * kWeightBytes + NR * sizeof(float) * kRows;
  bf16* tile[NT];
  float* S;
  bf16* w[NW];
  float* rows;
  __device__ explicit Smem(unsigned char* p) {
    for (int t = 0; t < NT; ++t, p += Tc<HD>::kTileBytes) tile[t] = reinterpret_cast<bf16*>(p);
    S = reinterpret_cast<float*>(p);
    p += kScoreBytes;
    for (int t = 0; t < NW; ++t, p += kWeightBytes) w[t] = reinterpret_cast<bf16*>(p);
    rows = reinterpret_cast<float*>(p);
  }
};
template <int HD>
using ForwardSmem = Smem<HD, 2, 1, 1>;  // K V | Q, then S | P | per-row factors
template <int HD>
using DqSmem = Smem<HD, 4, 1, 0>;  // Q dO K V | S, dP | dS
template <int HD>
using DkvSmem = Smem<HD, 4, 2, 2>;  // K V Q dO | S^T, dP^T | P^T dS^T | lse D

// The block's (tile, head, batch): a 1-D grid ordered so that the heaviest tiles of every
// (head, batch) start first and the light ones fill the tail.
struct Work {
  int64_t tile;
  int h, b;
};
__device__ Work decode(int heads, int64_t ntiles, bool last_heaviest) {
  const int64_t per = int64_t(gridDim.x) / ntiles;  // heads * B
  const int64_t t = int64_t(blockIdx.x) / per, rest = int64_t(blockIdx.x) % per;
  return {last_heaviest ? ntiles - 1 - t : t, int(rest % heads), int(rest / heads)};
}

// Rows [r0, r0 + 64) of one head (fp32, row stride ld; zeros from row T on) -> bf16 s[64][LD].
template <int HD>
__device__ void stage(bf16* s, const float* __restrict__ src, int64_t ld, int64_t r0, int64_t T) {
  constexpr int V = HD / 4;  // float4 per row
  static_assert(kRows * V % kTcThreads == 0, "whole float4 rounds per thread");
  // A fixed trip count, so that several loads are in flight per thread.
#pragma unroll 8
  for (int k = 0; k < kRows * V / kTcThreads; ++k) {
    const int e = threadIdx.x + k * kTcThreads, r = e / V, d = (e % V) * 4;
    const float4 x = r0 + r < T ? *reinterpret_cast<const float4*>(src + (r0 + r) * ld + d)
                                : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    __nv_bfloat162* p = reinterpret_cast<__nv_bfloat162*>(s + r * Tc<HD>::LD + d);
    p[0] = __floats2bfloat162_rn(x.x, x.y);
    p[1] = __floats2bfloat162_rn(x.z, x.w);
  }
}

// acc[n] = A B^T for sub-tiles n in [n0, n1): A is the warp's 16 rows (fragments a), B^T the
// 16-row sub-tiles of staged tile x; each result is stored to scratch column 16 n.
template <int HD>
__device__ void scores(const FragA (&a)[Tc<HD>::KD], const bf16* x, int n0, int n1, float* sw) {
  for (int n = n0; n < n1; ++n) {
    Acc s;
    wmma::fill_fragment(s, 0.0f);
#pragma unroll
    for (int kk = 0; kk < Tc<HD>::KD; ++kk) {
      FragBt b;
      wmma::load_matrix_sync(b, x + n * kSub * Tc<HD>::LD + kk * kSub, Tc<HD>::LD);
      wmma::mma_sync(s, a[kk], b, s);
    }
    wmma::store_matrix_sync(sw + n * kSub, s, kLdS, wmma::mem_row_major);
  }
}

template <int HD>
__device__ void load_rows(FragA (&a)[Tc<HD>::KD], const bf16* x) {  // the warp's 16 rows
#pragma unroll
  for (int kk = 0; kk < Tc<HD>::KD; ++kk) wmma::load_matrix_sync(a[kk], x + kk * kSub, Tc<HD>::LD);
}

// acc[n] += W X over sub-tiles m in [m0, m1): W is the warp's bf16 weights [16][kLdP], X a
// staged tile (its rows m are the contraction).
template <int HD>
__device__ void accumulate(Acc (&acc)[Tc<HD>::KD], const bf16* w, const bf16* x, int m0, int m1) {
  for (int m = m0; m < m1; ++m) {
    FragA a;
    wmma::load_matrix_sync(a, w + m * kSub, kLdP);
#pragma unroll
    for (int n = 0; n < Tc<HD>::KD; ++n) {
      FragB b;
      wmma::load_matrix_sync(b, x + m * kSub * Tc<HD>::LD + n * kSub, Tc<HD>::LD);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

template <int HD>
__device__ void zero(Acc (&acc)[Tc<HD>::KD]) {
#pragma unroll
  for (int n = 0; n < Tc<HD>::KD; ++n) wmma::fill_fragment(acc[n], 0.0f);
}

// acc[n] row r *= f[r], where row_of gives each accumulator element's row (see the forward).
template <int HD>
__device__ void rescale_rows(Acc (&acc)[Tc<HD>::KD], const float* f,
                             const int (&row_of)[Acc::num_elements]) {
  float fe[Acc::num_elements];  // one shared-memory read per element slot, not per fragment
#pragma unroll
  for (int e = 0; e < Acc::num_elements; ++e) fe[e] = f[row_of[e]];
#pragma unroll
  for (int n = 0; n < Tc<HD>::KD; ++n)
#pragma unroll
    for (int e = 0; e < Acc::num_elements; ++e) acc[n].x[e] *= fe[e];
}

// dst[row0 + r, :HD] = mul * acc (rows < T), through the warp's scratch 64 columns at a time.
template <int HD>
__device__ void write_rows(Acc (&acc)[Tc<HD>::KD], float* sw, float* __restrict__ dst, int64_t ld,
                           int64_t row0, int64_t T, float mul) {
  const int lane = threadIdx.x % 32;
  constexpr int kCols = HD < kRows ? HD : kRows;
#pragma unroll
  for (int n0 = 0; n0 < Tc<HD>::KD; n0 += kCols / kSub) {
    __syncwarp();
#pragma unroll
    for (int n = n0; n < n0 + kCols / kSub; ++n)
      wmma::store_matrix_sync(sw + (n - n0) * kSub, acc[n], kLdS, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < kSub * kCols; e += 32) {
      const int r = e / kCols, c = e % kCols;
      if (row0 + r < T) dst[(row0 + r) * ld + n0 * kSub + c] = sw[r * kLdS + c] * mul;
    }
  }
  __syncwarp();
}

template <int HD>
__global__ void __launch_bounds__(kTcThreads)
    attn_forward_tc_kernel(const float* __restrict__ qkv, Heads g, float scale,
                           float* __restrict__ out, float* __restrict__ lse) {
  using C = Tc<HD>;
  extern __shared__ __align__(128) unsigned char smem[];
  const ForwardSmem<HD> sm(smem);
  bf16 *Ks = sm.tile[0], *Vs = sm.tile[1];
  // Q is only read into registers, so it is staged in the score scratch: 62 KB in all at hd 128,
  // three blocks per SM.
  static_assert(Tc<HD>::kTileBytes <= kScoreBytes, "Q tile must fit the score scratch");
  bf16* Qs = reinterpret_cast<bf16*>(sm.S);

  const int64_t T = g.T, ntiles = (T + kRows - 1) / kRows;
  const Work w = decode(g.nq, ntiles, true);
  const int64_t q0 = w.tile * kRows;
  const int h = w.h, b = w.b, kvh = g.kv_of(h);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
  float* sw = sm.S + warp * kSub * kLdS;
  bf16* pw = sm.w[0] + warp * kSub * kLdP;
  float* rw = sm.rows + warp * kSub;
  const int64_t row0 = q0 + warp * kSub, i = row0 + r, last = min(row0 + kSub - 1, T - 1);

  stage<HD>(Qs, qkv + g.q(b, h), g.ld(), q0, T);
  __syncthreads();
  FragA qf[C::KD];
  load_rows<HD>(qf, Qs + warp * kSub * C::LD);
  __syncthreads();  // every warp holds its Q: the scratch is free

  // The accumulator's element order is unspecified: learn each element's row by loading a
  // matrix whose entries are their row index, so that O can be rescaled row-wise in registers.
  for (int e = lane; e < kSub * kSub; e += 32) sw[(e / kSub) * kLdS + e % kSub] = float(e / kSub);
  __syncwarp();
  Acc probe;
  wmma::load_matrix_sync(probe, sw, kLdS, wmma::mem_row_major);
  int row_of[Acc::num_elements];
#pragma unroll
  for (int e = 0; e < Acc::num_elements; ++e) row_of[e] = int(probe.x[e]);
  Acc o[C::KD];
  zero<HD>(o);
  float m = -INFINITY, l = 0.0f;

  // Key 0 is unmasked for every row (padding rows included), so m is finite after tile 0.
  const int64_t kend = min(T, q0 + kRows);
  for (int64_t k0 = 0; k0 < kend; k0 += kRows) {
    __syncthreads();  // the previous K, V are no longer read
    stage<HD>(Ks, qkv + g.k(b, kvh), g.ld(), k0, T);
    stage<HD>(Vs, qkv + g.v(b, kvh), g.ld(), k0, T);
    __syncthreads();
    // Sub-tiles of 16 keys up to the warp's last (valid) row; last >= k0 always.
    const int nsub = int(min(int64_t(kRows / kSub), (max(last, k0) - k0) / kSub + 1));
    scores<HD>(qf, Ks, 0, nsub, sw);
    __syncwarp();
    float s[kRows / 2], mx = -INFINITY;
#pragma unroll
    for (int cc = 0; cc < kRows / 2; ++cc) {
      const int c = 2 * cc + half;
      const int64_t j = k0 + c;
      s[cc] = (j <= i && j < T) ? sw[r * kLdS + c] * scale : -INFINITY;
      mx = fmaxf(mx, s[cc]);
    }
    const float mn = fmaxf(m, fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)));
    const float alpha = __expf(m - mn);  // 0 on the first tile (m = -inf)
    float sum = 0.0f;
#pragma unroll
    for (int cc = 0; cc < kRows / 2; ++cc) {
      const float p = __expf(s[cc] - mn);  // masked: exp(-inf) = 0
      pw[r * kLdP + 2 * cc + half] = __float2bfloat16(p);
      sum += p;
    }
    l = l * alpha + sum + __shfl_xor_sync(0xffffffffu, sum, 1);
    m = mn;
    if (half == 0) rw[r] = alpha;
    __syncwarp();
    rescale_rows<HD>(o, rw, row_of);
    accumulate<HD>(o, pw, Vs, 0, nsub);
  }
  __syncwarp();
  if (half == 0) {
    rw[r] = 1.0f / l;
    if (i < T) lse[g.stat(b, h) + i] = m + logf(l);
  }
  __syncwarp();
  rescale_rows<HD>(o, rw, row_of);
  write_rows<HD>(o, sw, out + g.o(b, h), g.ldo(), row0, T, 1.0f);
}

// dQ for 64 query rows of one (batch, head), streaming the key tiles up to the diagonal.
template <int HD>
__global__ void __launch_bounds__(kTcThreads)
    attn_backward_dq_tc_kernel(const float* __restrict__ dout, const float* __restrict__ qkv,
                               const float* __restrict__ lse, const float* __restrict__ D, Heads g,
                               float scale, float* __restrict__ dqkv) {
  using C = Tc<HD>;
  extern __shared__ __align__(128) unsigned char smem[];
  const DqSmem<HD> sm(smem);
  bf16 *Qs = sm.tile[0], *dOs = sm.tile[1], *Ks = sm.tile[2], *Vs = sm.tile[3];

  const int64_t T = g.T, ntiles = (T + kRows - 1) / kRows;
  const Work w = decode(g.nq, ntiles, true);
  const int64_t q0 = w.tile * kRows;
  const int h = w.h, b = w.b, kvh = g.kv_of(h);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
  float* sw = sm.S + warp * kSub * kLdS;
  bf16* dsw = sm.w[0] + warp * kSub * kLdP;
  const int64_t row0 = q0 + warp * kSub, i = row0 + r, last = min(row0 + kSub - 1, T - 1);
  const float Li = i < T ? lse[g.stat(b, h) + i] : 0.0f, Di = i < T ? D[g.stat(b, h) + i] : 0.0f;

  stage<HD>(Qs, qkv + g.q(b, h), g.ld(), q0, T);
  stage<HD>(dOs, dout + g.o(b, h), g.ldo(), q0, T);
  __syncthreads();
  FragA qf[C::KD], df[C::KD];
  load_rows<HD>(qf, Qs + warp * kSub * C::LD);
  load_rows<HD>(df, dOs + warp * kSub * C::LD);
  Acc dq[C::KD];
  zero<HD>(dq);

  const int64_t kend = min(T, q0 + kRows);
  for (int64_t k0 = 0; k0 < kend; k0 += kRows) {
    __syncthreads();
    stage<HD>(Ks, qkv + g.k(b, kvh), g.ld(), k0, T);
    stage<HD>(Vs, qkv + g.v(b, kvh), g.ld(), k0, T);
    __syncthreads();
    const int nsub = int(min(int64_t(kRows / kSub), (max(last, k0) - k0) / kSub + 1));
    scores<HD>(qf, Ks, 0, nsub, sw);  // q_i . k_j
    __syncwarp();
    float p[kRows / 2];
#pragma unroll
    for (int cc = 0; cc < kRows / 2; ++cc) {
      const int64_t j = k0 + 2 * cc + half;
      p[cc] = (j <= i && j < T && i < T) ? __expf(sw[r * kLdS + 2 * cc + half] * scale - Li) : 0.0f;
    }
    __syncwarp();
    scores<HD>(df, Vs, 0, nsub, sw);  // dO_i . v_j
    __syncwarp();
#pragma unroll
    for (int cc = 0; cc < kRows / 2; ++cc) {
      // The mask (not p == 0) selects: sub-tiles past nsub hold stale scratch.
      const int64_t j = k0 + 2 * cc + half;
      const float ds =
          (j <= i && j < T && i < T) ? p[cc] * (sw[r * kLdS + 2 * cc + half] - Di) : 0.0f;
      dsw[r * kLdP + 2 * cc + half] = __float2bfloat16(ds);
    }
    __syncwarp();
    accumulate<HD>(dq, dsw, Ks, 0, nsub);
  }
  write_rows<HD>(dq, sw, dqkv + g.q(b, h), g.ld(), row0, T, scale);
}

// dK, dV for 64 key rows of one (batch, kv head): the query heads of its group and the query
// tiles from the diagonal on stream past.
template <int HD>
__global__ void __launch_bounds__(kTcThreads)
    attn_backward_dkv_tc_kernel(const float* __restrict__ dout, const float* __restrict__ qkv,
                                const float* __restrict__ lse, const float* __restrict__ D, Heads g,
                                float scale, float* __restrict__ dqkv) {
  using C = Tc<HD>;
  extern __shared__ __align__(128) unsigned char smem[];
  const DkvSmem<HD> sm(smem);
  bf16 *Ks = sm.tile[0], *Vs = sm.tile[1], *Qs = sm.tile[2], *dOs = sm.tile[3];
  float *Ls = sm.rows, *Ds = sm.rows + kRows;

  const int64_t T = g.T, ntiles = (T + kRows - 1) / kRows;
  const Work w = decode(g.nkv, ntiles, false);  // the first key tiles see the most queries
  const int64_t k0 = w.tile * kRows;
  const int kvh = w.h, b = w.b, group = g.nq / g.nkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
  float* sw = sm.S + warp * kSub * kLdS;
  bf16* pw = sm.w[0] + warp * kSub * kLdP;
  bf16* dsw = sm.w[1] + warp * kSub * kLdP;
  const int64_t row0 = k0 + warp * kSub, j = row0 + r;

  stage<HD>(Ks, qkv + g.k(b, kvh), g.ld(), k0, T);
  stage<HD>(Vs, qkv + g.v(b, kvh), g.ld(), k0, T);
  // K and V rows are re-read from shared memory per use: holding them in registers as well as
  // both accumulators would spill at hd 128.
  const bf16* kw = Ks + warp * kSub * C::LD;
  const bf16* vw = Vs + warp * kSub * C::LD;
  Acc dk[C::KD], dv[C::KD];
  zero<HD>(dk);
  zero<HD>(dv);

  for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
    for (int64_t q0 = k0; q0 < T; q0 += kRows) {
      __syncthreads();
      stage<HD>(Qs, qkv + g.q(b, h), g.ld(), q0, T);
      stage<HD>(dOs, dout + g.o(b, h), g.ldo(), q0, T);
      for (int e = threadIdx.x; e < kRows; e += kTcThreads) {
        Ls[e] = q0 + e < T ? lse[g.stat(b, h) + q0 + e] : 0.0f;
        Ds[e] = q0 + e < T ? D[g.stat(b, h) + q0 + e] : 0.0f;
      }
      __syncthreads();
      // Query sub-tiles that see any of the warp's keys (i >= row0) and exist (i < T).
      const int m0 = q0 == k0 ? warp : 0;
      const int m1 = int(min(int64_t(kRows / kSub), (T - q0 + kSub - 1) / kSub));
      {
        FragA a[C::KD];
        load_rows<HD>(a, kw);
        scores<HD>(a, Qs, m0, m1, sw);  // k_j . q_i
      }
      __syncwarp();
      float p[kRows / 2];
#pragma unroll
      for (int cc = 0; cc < kRows / 2; ++cc) {
        const int c = 2 * cc + half;
        const int64_t i = q0 + c;
        p[cc] = (j <= i && i < T) ? __expf(sw[r * kLdS + c] * scale - Ls[c]) : 0.0f;
        pw[r * kLdP + c] = __float2bfloat16(p[cc]);
      }
      __syncwarp();
      {
        FragA a[C::KD];
        load_rows<HD>(a, vw);
        scores<HD>(a, dOs, m0, m1, sw);  // v_j . dO_i
      }
      __syncwarp();
#pragma unroll
      for (int cc = 0; cc < kRows / 2; ++cc) {
        const int c = 2 * cc + half;
        const int64_t i = q0 + c;
        const float ds = (j <= i && i < T) ? p[cc] * (sw[r * kLdS + c] - Ds[c]) : 0.0f;
        dsw[r * kLdP + c] = __float2bfloat16(ds);
      }
      __syncwarp();
      accumulate<HD>(dv, pw, dOs, m0, m1);
      accumulate<HD>(dk, dsw, Qs, m0, m1);
    }
  }
  write_rows<HD>(dk, sw, dqkv + g.k(b, kvh), g.ld(), row0, T, scale);
  write_rows<HD>(dv, sw, dqkv + g.v(b, kvh), g.ld(), row0, T, 1.0f);
}

// Blocks of the 1-D grid: row tiles x heads x batch.
unsigned blocks(const Heads& g, int64_t heads, int64_t B) {
  const int64_t n = (g.T + kRows - 1) / kRows * heads * B;
  check(n <= INT32_MAX, "cuda attention: ", n, " blocks exceed the grid size");
  return unsigned(n);
}

template <int HD>
void forward_hd(const float* qkv, const Heads& g, int64_t B, cudaStream_t st, float* out,
                float* lse) {
  allow_smem(attn_forward_tc_kernel<HD>, ForwardSmem<HD>::kBytes,
             "cudaFuncSetAttribute(attn_forward_tc_kernel)");
  attn_forward_tc_kernel<HD><<<blocks(g, g.nq, B), kTcThreads, ForwardSmem<HD>::kBytes, st>>>(
      qkv, g, 1.0f / sqrtf(float(HD)), out, lse);
  AUTOTP_LAUNCHED("attn_forward_tc_kernel");
}

template <int HD>
void backward_hd(const float* dout, const float* qkv, const float* lse, const float* D,
                 const Heads& g, int64_t B, cudaStream_t st, float* dqkv) {
  const float scale = 1.0f / sqrtf(float(HD));
  allow_smem(attn_backward_dq_tc_kernel<HD>, DqSmem<HD>::kBytes,
             "cudaFuncSetAttribute(attn_backward_dq_tc_kernel)");
  allow_smem(attn_backward_dkv_tc_kernel<HD>, DkvSmem<HD>::kBytes,
             "cudaFuncSetAttribute(attn_backward_dkv_tc_kernel)");
  // dK/dV first: its blocks are the longest (a whole group of heads each).
  attn_backward_dkv_tc_kernel<HD><<<blocks(g, g.nkv, B), kTcThreads, DkvSmem<HD>::kBytes, st>>>(
      dout, qkv, lse, D, g, scale, dqkv);
  AUTOTP_LAUNCHED("attn_backward_dkv_tc_kernel");
  attn_backward_dq_tc_kernel<HD><<<blocks(g, g.nq, B), kTcThreads, DqSmem<HD>::kBytes, st>>>(
      dout, qkv, lse, D, g, scale, dqkv);
  AUTOTP_LAUNCHED("attn_backward_dq_tc_kernel");
}

using TcDims = HeadDims<16, 32, 64, 128>;

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

bool tc_attention_applies(int64_t hd, const void* a, const void* b, const void* c) {
  // Read per call (cheap next to a launch) so that a test can time both paths in one process.
  return std::getenv("AUTOTP_ATTN_FP32") == nullptr && with_head_dim(TcDims{}, hd, [](auto) {}) &&
         aligned16(a) && aligned16(b) && aligned16(c);
}

void tc_attention_forward(const float* qkv, const Heads& g, int64_t B, cudaStream_t stream,
                          float* out, float* lse) {
  check(with_head_dim(TcDims{}, g.hd,
                      [&](auto c) { forward_hd<decltype(c)::value>(qkv, g, B, stream, out, lse); }),
        "cuda attention: no tensor-core kernel for head_dim ", g.hd);
}

void tc_attention_backward(const float* dout, const float* qkv, const float* lse, const float* D,
                           const Heads& g, int64_t B, cudaStream_t stream, float* dqkv) {
  check(with_head_dim(TcDims{}, g.hd,
                      [&](auto c) {
                        backward_hd<decltype(c)::value>(dout, qkv, lse, D, g, B, stream, dqkv);
                      }),
        "cuda attention: no tensor-core kernel for head_dim ", g.hd);
}

}  // namespace autotp::cuda
