// The tensor-core attention backward (attention_mma.cuh has the design): dK and dV per key
// block, storing dS, then dQ from it; or, where dS does not fit its budget, one launch that
// recomputes it for dQ.
#include "kernels/cuda/attention_mma.cuh"

namespace autotp::cuda {

namespace {

// D[b, h, i] = sum_d dO O over each head (dO and O fp32, or narrow bf16), and, from an fp32
// dO, dout16 = bf16(dout). A block per row, 8 elements per thread (16-byte bf16 accesses); a
// head is hd / 8 adjacent lanes, summed by shuffles in a fixed order. (One warp per 32 groups of
// 4 with 64-bit index divisions per group ran at 60 us per layer, 2.4x its bytes.)
template <typename DoutT, typename OutT>
__global__ void attn_prep_dout_kernel(const DoutT* __restrict__ dout, const OutT* __restrict__ out,
                                      Heads g, bf16* __restrict__ dout16, float* __restrict__ D) {
  const int64_t row = blockIdx.x, ldo = g.ldo();
  const int b = int(row / g.T), i = int(row - int64_t(b) * g.T);
  const int L = g.hd / 8, chunks = int(ldo / 8);     // L divides 32: a head never spans warps
  for (int c0 = 0; c0 < chunks; c0 += blockDim.x) {  // warp-uniform bounds for the shuffles
    const int c = c0 + int(threadIdx.x);
    float acc = 0.0f;
    if (c < chunks) {
      float x[8], y[8];
      load_k<8>(dout + row * ldo + 8 * c, x);
      load_k<8>(out + row * ldo + 8 * c, y);
#pragma unroll
      for (int k = 0; k < 8; ++k) acc += x[k] * y[k];
      if constexpr (std::is_same_v<DoutT, float>) store_k<8>(dout16 + row * ldo + 8 * c, x);
    }
    for (int off = L / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (c < chunks && c % L == 0) D[g.stat(b, c / L) + i] = acc;
  }
}

// ---------------------------------------------------------------- backward

// The backward's arguments: bf16 copies of qkv and dout, the saved lse, D; where dS is stored,
// the tiles of the (batch, kv head) units [u0, u0 + units) of this pass.
struct Bwd {
  const bf16* qkv;
  const bf16* dout;
  const float* lse;
  const float* D;
  Heads g;
  float scale;
  Out dqkv;
  bf16* ds;
  int64_t u0;
};

// One block shape for both parts of the backward: 8 warps.
constexpr int kBwdThreads = 256;
constexpr int kDqRows = 128;  // query rows of a dQ block (16 per warp)
constexpr int kDkvRows = 64;  // key rows of a dK/dV block (16 per warp of each warp group)
constexpr int kGroup = 128;   // threads of a dK/dV warp group

// dS = P (dP - D), as the dK/dV blocks compute it, stored for dQ = dS K: per (batch, query
// head), the tiles of kDs queries x kDs keys on and below the diagonal, tile (qt, kt) at
// qt (qt + 1) / 2 + kt, each [key][query] bf16 (the layout of dS^T in the dK/dV registers).
// Storing it costs 2 bytes per causal score; recomputing it in the dQ blocks costs two
// products (S and dP) per tile.
constexpr int kDs = 64;
__host__ __device__ inline int64_t ds_tiles(int64_t T) {
  const int64_t nt = (T + kDs - 1) / kDs;
  return nt * (nt + 1) / 2;
}
__device__ inline bf16* ds_tile(const Bwd& a, int b, int h, int64_t qt, int64_t kt) {
  const int64_t unit = int64_t(b) * a.g.nq + h - a.u0 * (a.g.nq / a.g.nkv);
  return a.ds + (unit * ds_tiles(a.g.T) + qt * (qt + 1) / 2 + kt) * kDs * kDs;
}

// Shared memory of dQ: Q and dO [kDqRows] each, K and V [2][kBc] each.
template <int HD>
constexpr size_t dq_smem() {
  return Hd<HD>::kRow * (2 * kDqRows + 4 * kBc);
}

// dQ for kDqRows query rows of one (batch, head), streaming the key tiles up to the diagonal.
template <int HD>
__device__ __forceinline__ void dq_block(unsigned char* smem, int64_t blk, int64_t nblk,
                                         const Bwd& a) {
  using C = Hd<HD>;
  constexpr int BR = kDqRows, NT = kBwdThreads, NB = kBc / 8;
  const uint32_t Qs = smem_u32(smem), dOs = Qs + BR * C::kRow, Ks = dOs + BR * C::kRow;
  const uint32_t Vs = Ks + 2 * kBc * C::kRow;

  const Heads& g = a.g;
  const int64_t T = g.T, ld = g.ld();
  const Work w = decode(blk, nblk, g.nq, (T + BR - 1) / BR, true);
  const int64_t q0 = w.tile * BR;
  const int kvh = g.kv_of(w.h), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row0 = q0 + 16 * warp, i0 = row0 + lane / 4;
  const int c0 = 2 * (lane % 4);
  const bf16 *kg = a.qkv + g.k(w.b, kvh), *vg = a.qkv + g.v(w.b, kvh);

  auto load_kv = [&](int kt) { load_kv_tiles<HD, kBc, NT>(Ks, Vs, kg, vg, ld, kt, T); };
  load_tile<HD, BR, NT>(Qs, a.qkv + g.q(w.b, w.h), ld, q0, T, threadIdx.x);
  load_tile<HD, BR, NT>(dOs, a.dout + g.o(w.b, w.h), g.ldo(), q0, T, threadIdx.x);
  load_kv(0);
  cp_commit();

  // Row statistics of rows i0, i0 + 8 (padding rows: any finite value, their dS is 0 as their
  // dO is; they are not written).
  const float* Lg = a.lse + g.stat(w.b, w.h);
  const float* Dg = a.D + g.stat(w.b, w.h);
  const float nl[2] = {i0 < T ? -Lg[i0] * kLog2e : 0.0f, i0 + 8 < T ? -Lg[i0 + 8] * kLog2e : 0.0f};
  const float Dr[2] = {i0 < T ? Dg[i0] : 0.0f, i0 + 8 < T ? Dg[i0 + 8] : 0.0f};
  const uint32_t qa = Qs + 16 * warp * C::kRow + off_a<HD>(lane);
  const uint32_t da = dOs + 16 * warp * C::kRow + off_a<HD>(lane);
  const float sl2 = a.scale * kLog2e;
  float dq[C::ND][4] = {};

  const int nk = int((min(T, q0 + BR) + kBc - 1) / kBc);
  pipeline(
      nk, load_kv,
      [&](int kt) {
        const int64_t k0 = int64_t(kt) * kBc;
        if (k0 > row0 + 15) return;
        const uint32_t kt_s = Ks + (kt & 1) * kBc * C::kRow, vt_s = Vs + (kt & 1) * kBc * C::kRow;
        const int rel = int(k0 - i0);
        with_part(k0 + kBc - 1 > row0, [&](auto part) {
          constexpr bool kPart = decltype(part)::value;
          const int hi = kPart ? min(NB / 2, (int(row0 - k0) + 15) / 16 + 1) : NB / 2;
          float s[NB][4] = {}, dp[NB][4] = {};
          mma_abt<HD, NB, kPart>(
              s, [&](int kd, uint32_t(&f)[4]) { ldsm4(f, qa + kd * 32); }, kt_s + off_b<HD>(lane),
              0, hi);
          mma_abt<HD, NB, kPart>(
              dp, [&](int kd, uint32_t(&f)[4]) { ldsm4(f, da + kd * 32); }, vt_s + off_b<HD>(lane),
              0, hi);
#pragma unroll
          for (int nb = 0; nb < NB; ++nb)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int r = e >> 1;
              float p = ex2(fmaf(s[nb][e], sl2, nl[r]));  // P = e^(scale s - lse)
              if (kPart && rel + nb * 8 + c0 + (e & 1) > 8 * r) p = 0.0f;
              s[nb][e] = p * (dp[nb][e] - Dr[r]);  // dS
            }
          mma_px<HD, NB, kPart>(dq, s, kt_s + off_a<HD>(lane), 0, hi);  // dQ += dS K
        });
      },
      [] { __syncthreads(); });
  store_rows<HD>(dq, a.dqkv, g.q(w.b, w.h), ld, i0, T, a.scale, a.scale);
}

// Query rows per dK/dV step: a stored dS tile is a step's.
constexpr int kDkvBq = kDs;

// Shared memory of dK/dV: K and V [kDkvRows] each, then per warp group Q and dO [2][BQ] each,
// lse and D [2][BQ] each (BQ = kDkvBq).
template <int HD>
__host__ __device__ constexpr size_t dkv_group_smem() {
  return Hd<HD>::kRow * 4 * kDkvBq + sizeof(float) * 4 * kDkvBq;
}
template <int HD>
constexpr size_t dkv_smem() {
  return Hd<HD>::kRow * 2 * kDkvRows + 2 * dkv_group_smem<HD>();
}

// The steps both dK/dV kernels share, on a lane's rows j0, j0 + 8 (keys) and the columns c0, c0
// + 1 of each n-tile (queries of the tile) in accumulator layout.

// S^T -> P^T = e^(scale s - lse) (Lt: the tile's lse); with kPart, 0 where the query precedes
// the key (query c of the tile is j0 + rel + c) or lies past T (c >= valid).
template <bool kPart, int NB>
__device__ __forceinline__ void probs_t(float (&p)[NB][4], const float* Lt, float sl2, int c0,
                                        int rel, int valid) {
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) {
    const float2 L = *reinterpret_cast<const float2*>(Lt + nb * 8 + c0);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float x = ex2(fmaf(p[nb][e], sl2, -(e & 1 ? L.y : L.x) * kLog2e));
      const int c = nb * 8 + c0 + (e & 1);
      p[nb][e] = kPart && (8 * (e >> 1) > rel + c || c >= valid) ? 0.0f : x;
    }
  }
}

// dP^T -> dS^T = P^T (dP^T - D) (Dt: the tile's D).
template <int NB>
__device__ __forceinline__ void dscores_t(float (&ds)[NB][4], const float (&p)[NB][4],
                                          const float* Dt, int c0) {
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) {
    const float2 Dv = *reinterpret_cast<const float2*>(Dt + nb * 8 + c0);
#pragma unroll
    for (int e = 0; e < 4; ++e) ds[nb][e] = p[nb][e] * (ds[nb][e] - (e & 1 ? Dv.y : Dv.x));
  }
}

// The lane's rows of dS^T, in bf16, into the stored tile d at its row `row` (masked scores store
// 0), for the dQ blocks.
template <int NB>
__device__ __forceinline__ void store_ds_t(const float (&ds)[NB][4], bf16* d, int row, int c0) {
  d += row * kDs + c0;
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) {
    *reinterpret_cast<uint32_t*>(d + nb * 8) = pack_bf16(ds[nb][0], ds[nb][1]);
    *reinterpret_cast<uint32_t*>(d + 8 * kDs + nb * 8) = pack_bf16(ds[nb][2], ds[nb][3]);
  }
}

// The end of a dK/dV block: group 1 hands its sums to group 0 through shared memory xch (the
// now idle Q / dO buffers; element k of thread t at [k][t], conflict-free), and group 0 adds
// them, in a fixed order, and stores its rows j0, j0 + 8 of dK (scaled) and dV.
template <int HD>
__device__ __forceinline__ void store_dkv(float (&dk)[Hd<HD>::ND][4], float (&dv)[Hd<HD>::ND][4],
                                          float* xch, int gi, int t, const Bwd& a, const Work& w,
                                          int64_t j0) {
  constexpr int E = Hd<HD>::ND * 4;
  __syncthreads();
  if (gi == 1) {
#pragma unroll
    for (int k = 0; k < E; ++k) {
      xch[k * kGroup + t] = dk[k / 4][k % 4];
      xch[(E + k) * kGroup + t] = dv[k / 4][k % 4];
    }
  }
  __syncthreads();
  if (gi == 0) {
#pragma unroll
    for (int k = 0; k < E; ++k) {
      dk[k / 4][k % 4] += xch[k * kGroup + t];
      dv[k / 4][k % 4] += xch[(E + k) * kGroup + t];
    }
    const Heads& g = a.g;
    store_rows<HD>(dk, a.dqkv, g.k(w.b, w.h), g.ld(), j0, g.T, a.scale, a.scale);
    store_rows<HD>(dv, a.dqkv, g.v(w.b, w.h), g.ld(), j0, g.T, 1.0f, 1.0f);
  }
}

// dK, dV for kDkvRows key rows of one (batch, kv head): the query heads of its group and their
// query tiles (BQ rows) from the diagonal on stream past, the even steps through warp group 0
// and the odd ones through group 1 (each warp of a group owns 16 keys), whose sums are added
// at the end (in a fixed order).
// With kStore, dS goes to a.ds as well.
template <int HD, bool kStore>
__device__ __forceinline__ void dkv_block(unsigned char* smem, int64_t blk, int64_t nblk,
                                          const Bwd& a) {
  using C = Hd<HD>;
  constexpr int BK = kDkvRows, BQ = kDkvBq, NB = BQ / 8;
  // Query tiles start at the block's first key, so every warp has queries at or after its keys
  // in every step; and the stored tiles are the steps' tiles.
  static_assert(BQ == BK && BK == kDs, "dK/dV steps are dS tiles");
  const int gi = threadIdx.x / kGroup, t = threadIdx.x % kGroup;  // warp group, its thread
  const uint32_t Ks = smem_u32(smem), Vs = Ks + BK * C::kRow;
  const uint32_t gbase = 2 * BK * C::kRow + gi * dkv_group_smem<HD>();  // byte offset
  const uint32_t Qs = Ks + gbase, dOs = Qs + 2 * BQ * C::kRow;          // [2][BQ] each
  const uint32_t Ls = dOs + 2 * BQ * C::kRow, Ds = Ls + 2 * BQ * 4;     // [2][BQ] each
  const float* Lp = reinterpret_cast<const float*>(smem + gbase + 4 * BQ * C::kRow);
  const float* Dp = Lp + 2 * BQ;

  const Heads& g = a.g;
  const int64_t T = g.T, ld = g.ld();
  const Work w = decode(blk, nblk, g.nkv, (T + BK - 1) / BK, false, a.u0);  // first: most
  const int64_t k0 = w.tile * BK;
  const int kvh = w.h, group = g.nq / g.nkv, warp = t / 32, lane = threadIdx.x % 32;
  const int64_t row0 = k0 + 16 * warp, j0 = row0 + lane / 4;  // the lane's keys: j0, j0 + 8
  const int c0 = 2 * (lane % 4);

  // Step it: query head kvh * group + it / nqt, query tile qs + (it % nqt) BQ, where qs is the
  // first tile holding queries >= k0. Group gi takes steps it = gi + 2 n, n < ng.
  const int64_t qs = k0 / BQ * BQ;
  const int nqt = int((T - qs + BQ - 1) / BQ), ng = (group * nqt - gi + 1) / 2;
  auto load_q = [&](int n) {
    const int it = gi + 2 * n, h = kvh * group + it / nqt;
    const int64_t q0 = qs + int64_t(it % nqt) * BQ;
    const uint32_t buf = n & 1;
    load_tile<HD, BQ, kGroup>(Qs + buf * BQ * C::kRow, a.qkv + g.q(w.b, h), ld, q0, T, t);
    load_tile<HD, BQ, kGroup>(dOs + buf * BQ * C::kRow, a.dout + g.o(w.b, h), g.ldo(), q0, T, t);
    load_vec<BQ, kGroup>(Ls + buf * BQ * 4, a.lse + g.stat(w.b, h), q0, T, t);
    load_vec<BQ, kGroup>(Ds + buf * BQ * 4, a.D + g.stat(w.b, h), q0, T, t);
  };
  load_tile<HD, BK, kBwdThreads>(Ks, a.qkv + g.k(w.b, kvh), ld, k0, T, threadIdx.x);
  load_tile<HD, BK, kBwdThreads>(Vs, a.qkv + g.v(w.b, kvh), ld, k0, T, threadIdx.x);
  if (ng > 0) load_q(0);
  cp_commit();
  cp_wait<0>();
  __syncthreads();  // K and V came from both groups

  // K and V rows are re-read from shared memory per use: holding them in registers as well as
  // both accumulators would spill at hd 128.
  const uint32_t ka = Ks + 16 * warp * C::kRow + off_a<HD>(lane);
  const uint32_t va = Vs + 16 * warp * C::kRow + off_a<HD>(lane);
  const float sl2 = a.scale * kLog2e;
  float dk[C::ND][4] = {}, dv[C::ND][4] = {};

  pipeline(
      ng, load_q,
      [&](int n) {
        const int it = gi + 2 * n;
        const int64_t q0 = qs + int64_t(it % nqt) * BQ;
        const uint32_t buf = n & 1;
        const uint32_t qt_s = Qs + buf * BQ * C::kRow, dot_s = dOs + buf * BQ * C::kRow;
        const float* Lt = Lp + buf * BQ;
        const float* Dt = Dp + buf * BQ;
        const int rel = int(q0 - j0);  // query c of the tile is j0 + rel + c
        with_part(q0 < row0 + 15 || q0 + BQ > T, [&](auto part) {  // some j > i, or i >= T
          constexpr bool kPart = decltype(part)::value;
          // Column pairs from the warp's first key on.
          const int lo = kPart && row0 > q0 ? int(row0 - q0) / 16 : 0;
          const int valid = int(min(int64_t(BQ), T - q0));  // columns below T
          float p[NB][4] = {};                              // S^T, then P^T
          mma_abt<HD, NB, kPart>(
              p, [&](int kd, uint32_t(&f)[4]) { ldsm4(f, ka + kd * 32); }, qt_s + off_b<HD>(lane),
              lo, NB / 2);
          probs_t<kPart>(p, Lt, sl2, c0, rel, valid);
          float ds[NB][4] = {};  // dP^T, then dS^T
          mma_abt<HD, NB, kPart>(
              ds, [&](int kd, uint32_t(&f)[4]) { ldsm4(f, va + kd * 32); }, dot_s + off_b<HD>(lane),
              lo, NB / 2);
          dscores_t(ds, p, Dt, c0);
          if constexpr (kStore)
            store_ds_t(ds, ds_tile(a, w.b, kvh * group + it / nqt, q0 / BQ, w.tile),
                       16 * warp + lane / 4, c0);
          mma_px<HD, NB, kPart>(dv, p, dot_s + off_a<HD>(lane), lo, NB / 2);  // dV += P^T dO
          mma_px<HD, NB, kPart>(dk, ds, qt_s + off_a<HD>(lane), lo, NB / 2);  // dK += dS^T Q
        });
      },
      [&] { group_sync<kGroup>(gi); });

  static_assert(2 * C::ND * 4 * kGroup * sizeof(float) <= 2 * dkv_group_smem<HD>(),
                "the exchange fits the Q / dO buffers");
  store_dkv<HD>(dk, dv, reinterpret_cast<float*>(smem + 2 * BK * C::kRow), gi, t, a, w, j0);
}

// ---------------------------------------------------------------- dK/dV on wgmma (sm_90a)
// dK, dV for 128 keys of one (batch, kv head) per block, 64 per warpgroup, each product one
// warpgroup MMA (wgmma.cuh) on swizzled tiles (attention_mma.cuh): S^T = K Q^T and dP^T = V dO^T
// read both operands from shared memory, dV += P^T dO and dK += dS^T Q take P^T and dS^T from
// registers (where the elementwise code left them, in mma.sync's layout) and dO and Q
// transposed. The two warpgroups step through the same query tiles (every query head of the
// group, from the block's first key on), so each Q and dO tile is loaded once for both; the
// tensor cores read it once per warpgroup, where mma.sync had every warp load it through
// ldmatrix. Head dim 128 (Phi-4's), stored dS.
constexpr int kDkvWgKeys = 128;
// Buffers of the Q / dO tiles (pipeline_mbar: loads two steps ahead, the warpgroups up to a step
// apart).
constexpr int kDkvStages = 3;
// A warpgroup's dS^T tile on its way to memory: 64 rows of 64 bf16, rows 144 bytes apart (16
// bytes of padding put the 8 rows of an stmatrix phase on distinct banks).
constexpr uint32_t kDsStageRow = kDs * 2 + 16, kDsStage = kDs * kDsStageRow;
// Shared memory: K and V tiles per warpgroup, then Q and dO [kDkvStages] tiles each, the dS^T
// staging tiles [2 groups][2], lse and D [kDkvStages][BQ], the pipeline's 2 kDkvStages
// mbarriers.
constexpr size_t kDkvWgSmem = (4 + 2 * kDkvStages) * size_t(kWgTile) + 4 * size_t(kDsStage) +
                              sizeof(float) * 2 * kDkvStages * kDkvBq + 8 * 2 * kDkvStages;

__global__ void __launch_bounds__(kBwdThreads) attn_backward_dkv_wgmma(Bwd a) {
#ifdef AUTOTP_WGMMA
  extern __shared__ __align__(1024) unsigned char smem[];
  constexpr int HD = kWgHd, BQ = kDkvBq, NB = BQ / 8, S = kDkvStages;
  using C = Hd<HD>;
  static_assert(BQ == kDs && BQ == 64 && kDkvWgKeys == 2 * BQ, "a warpgroup's 64 keys");
  constexpr uint32_t kTile = kWgTile;
  const int gi = warpgroup_uniform(), t = threadIdx.x % kGroup;
  const uint32_t Ks = smem_u32(smem) + gi * kTile, Vs = Ks + 2 * kTile;  // this group's
  constexpr uint32_t kStageOff = (4 + 2 * S) * kTile, kLseOff = kStageOff + 4 * kDsStage;
  const uint32_t Qs = smem_u32(smem) + 4 * kTile, dOs = Qs + S * kTile;
  const uint32_t stage = kStageOff + 2 * gi * kDsStage;  // byte offset of the group's [2] tiles
  const uint32_t Ls = smem_u32(smem) + kLseOff, Ds = Ls + S * BQ * 4, bars = Ds + S * BQ * 4;
  const float* Lp = reinterpret_cast<const float*>(smem + kLseOff);
  const float* Dp = Lp + S * BQ;

  const Heads& g = a.g;
  const int64_t T = g.T, ld = g.ld();
  const Work w =
      decode(blockIdx.x, gridDim.x, g.nkv, (T + kDkvWgKeys - 1) / kDkvWgKeys, false, a.u0);
  const int64_t k0 = w.tile * kDkvWgKeys, kg = k0 + BQ * gi;  // the block's, the group's keys
  const int kvh = w.h, group = g.nq / g.nkv, warp = t / 32, lane = threadIdx.x % 32;
  const int64_t j0 = kg + 16 * warp + lane / 4;  // the lane's keys: j0, j0 + 8
  const int c0 = 2 * (lane % 4);

  // Step n: query head h0 + hh, query tile qi (queries k0 + qi BQ), the pipeline's buffer, with
  // (hh, qi) advanced step by step (hh = n / nqt, qi = n % nqt: no division per step); the loads
  // run S - 1 steps ahead on their own (lh, lq).
  const int nqt = int((T - k0 + BQ - 1) / BQ), steps = group * nqt;
  const int h0 = kvh * group;
  const bf16 *qg = a.qkv + g.q(w.b, h0), *og = a.dout + g.o(w.b, h0);
  const float *lg = a.lse + g.stat(w.b, h0), *dg = a.D + g.stat(w.b, h0);
  int lh = 0, lq = 0;
  auto load_q = [&](int, uint32_t buf) {
    const int64_t q0 = k0 + int64_t(lq) * BQ;
    load_tile_wg<kBwdThreads>(Qs + buf * kTile, qg + lh * HD, ld, q0, T, threadIdx.x);
    load_tile_wg<kBwdThreads>(dOs + buf * kTile, og + lh * HD, g.ldo(), q0, T, threadIdx.x);
    load_vec<BQ, kBwdThreads>(Ls + buf * BQ * 4, lg + lh * T, q0, T, threadIdx.x);
    load_vec<BQ, kBwdThreads>(Ds + buf * BQ * 4, dg + lh * T, q0, T, threadIdx.x);
    if (++lq == nqt) lq = 0, ++lh;
  };
  load_tile_wg<kGroup>(Ks, a.qkv + g.k(w.b, kvh), ld, kg, T, t);
  load_tile_wg<kGroup>(Vs, a.qkv + g.v(w.b, kvh), ld, kg, T, t);
  const uint64_t dk0 = desc_k(Ks), dv0 = desc_k(Vs);

  const float sl2 = a.scale * kLog2e;
  float dk[C::ND][4] = {}, dv[C::ND][4] = {};
  auto flat64 = [](float(&x)[NB][4]) -> float(&)[32] { return reinterpret_cast<float(&)[32]>(x); };
  auto flat128 = [](float(&x)[C::ND][4]) -> float(&)[64] {
    return reinterpret_cast<float(&)[64]>(x);
  };

  int hh = 0, qi = 0;  // step n's head (of the group) and query tile; then step n + 1's
  uint32_t sb = 0;     // the staging tile of the group's next dS store
  // The first step's full barrier also covers K and V (each thread's earlier copies).
  pipeline_mbar<S, kBwdThreads>(steps, bars, load_q, [&](int, uint32_t buf, auto&& next) {
    const int64_t q0 = k0 + int64_t(qi) * BQ;
    const int h = h0 + hh;
    if (++qi == nqt) qi = 0, ++hh;
    // No key of the group below T, or every query of the tile before its keys: the whole
    // group skips (wgmma runs on all four warps alike).
    if (kg >= T || q0 + BQ <= kg) {
      next();
      return;
    }
    const uint32_t qt_s = Qs + buf * kTile, dot_s = dOs + buf * kTile;
    const uint64_t dq0 = desc_k(qt_s), ddo0 = desc_k(dot_s);
    const int rel = int(q0 - j0);
    float p[NB][4], ds[NB][4];  // S^T then P^T; dP^T then dS^T
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
      wgmma_m64n64k16_ss<0>(flat64(p), desc_k_at(dk0, kk), desc_k_at(dq0, kk), kk > 0);
    wgmma_commit();
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
      wgmma_m64n64k16_ss<0>(flat64(ds), desc_k_at(dv0, kk), desc_k_at(ddo0, kk), kk > 0);
    wgmma_commit();
    next();
    // P^T while dP^T is still in flight; the mask's variant is the whole warp group's.
    wgmma_wait<1>();
    wgmma_fence_operand(flat64(p));
    with_part(q0 < kg + BQ - 1 || q0 + BQ > T, [&](auto part) {
      constexpr bool kPart = decltype(part)::value;
      probs_t<kPart>(p, Lp + buf * BQ, sl2, c0, rel, int(min(int64_t(BQ), T - q0)));
    });
    wgmma_wait<0>();
    wgmma_fence_operand(flat64(ds));
    dscores_t(ds, p, Dp + buf * BQ, c0);
    uint32_t fp[NB / 2][4], fs[NB / 2][4];
#pragma unroll
    for (int kk = 0; kk < NB / 2; ++kk) a_frag(p, kk, fp[kk]), a_frag(ds, kk, fs[kk]);
    const uint64_t ddo = desc_mn(dot_s), dq = desc_mn(qt_s);
    wgmma_fence_operand(flat128(dv));
    wgmma_fence_operand(flat128(dk));
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < NB / 2; ++kk)  // dV += P^T dO
      wgmma_m64n128k16_rs<1>(flat128(dv), fp[kk], desc_mn_at(ddo, kk));
#pragma unroll
    for (int kk = 0; kk < NB / 2; ++kk)  // dK += dS^T Q
      wgmma_m64n128k16_rs<1>(flat128(dk), fs[kk], desc_mn_at(dq, kk));
    wgmma_commit();
    // dS^T to its stored tile while the products run: the fragments into a staging tile
    // (stmatrix), then 16-byte rows to memory, a warp's 512 contiguous bytes per store. Stored
    // straight from the fragments, 16 4-byte pieces per thread (half of each 32-byte sector per
    // store: 25% excess sectors), the stores were slow to take their registers, and the dK wgmma,
    // which reads the same registers, waited for them: the kernel's most sampled stall in ncu's
    // source view (0.507 -> 0.438 ms per layer).
    // Two staging tiles per group in turn: the barrier of one store orders the copy-out of the
    // one before it ahead of the next write to its tile.
    const uint32_t st = stage + sb * kDsStage;
    sb ^= 1;
#pragma unroll
    for (int kk = 0; kk < NB / 2; ++kk)
      stsm4(smem_u32(smem) + st + (16 * warp + (lane & 15)) * kDsStageRow + kk * 32 +
                (lane >> 4) * 16,
            fs[kk]);
    group_sync<kGroup>(gi);
    bf16* dst = ds_tile(a, w.b, h, q0 / BQ, kg / BQ);
#pragma unroll
    for (int i = 0; i < kDs * kDs / 8 / kGroup; ++i) {
      const int q = t + i * kGroup, r = q / 8, c = q % 8;
      *reinterpret_cast<uint4*>(dst + r * kDs + c * 8) =
          *reinterpret_cast<const uint4*>(smem + st + r * kDsStageRow + c * 16);
    }
    wgmma_wait<0>();
    wgmma_fence_operand(flat128(dv));
    wgmma_fence_operand(flat128(dk));
  });

  store_rows<HD>(dk, a.dqkv, g.k(w.b, kvh), ld, j0, T, a.scale, a.scale);
  store_rows<HD>(dv, a.dqkv, g.v(w.b, kvh), ld, j0, T, 1.0f, 1.0f);
#else
  __trap();  // launched only where compiled for sm_90a (wgmma_attention())
#endif
}

// dQ for kDqRows query rows (two dS tiles of queries) of one (batch, head) from the stored dS:
// dQ = scale dS K, one product per key tile where recomputing dS takes three.
template <int HD>
constexpr size_t dq_ds_smem() {
  return Hd<HD>::kRow * 2 * kBc + Hd<kDs>::kRow * 4 * kDs;  // K [2][kBc], dS^T [2][2][kDs]
}

template <int HD>
__device__ __forceinline__ void dq_ds_block(unsigned char* smem, const Bwd& a) {
  using C = Hd<HD>;
  using S = Hd<kDs>;  // a dS^T tile: kDs rows of kDs bf16
  constexpr int BR = kDqRows, NT = kBwdThreads;
  static_assert(kBc == kDs && BR == 2 * kDs, "a key tile is a dS tile; a block two query tiles");
  const uint32_t Ks = smem_u32(smem), Ss = Ks + 2 * kBc * C::kRow;

  const Heads& g = a.g;
  const int64_t T = g.T, ld = g.ld(), nt = (T + kDs - 1) / kDs;
  const Work w =
      decode(blockIdx.x, gridDim.x, g.nq, (T + BR - 1) / BR, true, a.u0 * (g.nq / g.nkv));
  const int64_t q0 = w.tile * BR, qt0 = q0 / kDs;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row0 = q0 + 16 * warp, i0 = row0 + lane / 4;
  const int half = warp / 4;  // the warp's rows are in query tile qt0 + half
  const bf16* kg = a.qkv + g.k(w.b, g.kv_of(w.h));

  auto load = [&](int kt) {
    const uint32_t buf = kt & 1;
    load_tile<HD, kBc, NT>(Ks + buf * kBc * C::kRow, kg, ld, int64_t(kt) * kBc, T, threadIdx.x);
#pragma unroll
    for (int s = 0; s < 2; ++s)
      if (qt0 + s < nt && kt <= qt0 + s)
        load_tile<kDs, kDs, NT>(Ss + (2 * buf + s) * kDs * S::kRow,
                                ds_tile(a, w.b, w.h, qt0 + s, kt), kDs, 0, kDs, threadIdx.x);
  };
  load(0);
  cp_commit();

  float dq[C::ND][4] = {};
  const int nk = int((min(T, q0 + BR) + kBc - 1) / kBc);
  pipeline(
      nk, load,
      [&](int kt) {
        const int64_t k0 = int64_t(kt) * kBc;
        if (row0 >= T || k0 > row0 + 15) return;  // no row, or every key after the warp's rows
        const uint32_t buf = kt & 1;
        // A = dS rows of the warp from the stored dS^T: the .trans of off_b's addressing.
        const uint32_t da =
            Ss + (2 * buf + half) * kDs * S::kRow + off_b<kDs>(lane) + 16 * (warp % 4) * 2;
        const uint32_t kb = Ks + buf * kBc * C::kRow + off_a<HD>(lane);
        const int hi = int(min(int64_t(kBc / 16), (row0 + 15 - k0) / 16 + 1));  // dS 0 past it
#pragma unroll
        for (int kk = 0; kk < kBc / 16; ++kk) {
          if (kk >= hi) break;
          uint32_t af[4];
          ldsm4t(af, da + kk * 16 * S::kRow);
#pragma unroll
          for (int dn = 0; dn < C::ND; dn += 2) {
            uint32_t f[4];
            ldsm4t(f, kb + kk * 16 * C::kRow + dn * 16);
            mma(dq[dn], af, f[0], f[1]);
            mma(dq[dn + 1], af, f[2], f[3]);
          }
        }
      },
      [] { __syncthreads(); });
  store_rows<HD>(dq, a.dqkv, g.q(w.b, w.h), ld, i0, T, a.scale, a.scale);
}

// dQ from the stored dS on wgmma: each warpgroup owns one dS query tile (64 queries), the two of
// a block share the key tiles; dQ += dS K per key tile takes dS^T as stored ([key][query]: a
// transposed A) and K transposed, both from shared memory.
// Three stages (loads two key tiles ahead): the stored dS comes from memory, not from L2.
constexpr int kDqStages = 3;
constexpr size_t dq_wg_smem() {  // K [kDqStages], dS^T [kDqStages][2], 2 kDqStages mbarriers
  return kDqStages * (size_t(kWgTile) + 2 * size_t(kDs) * kDs * 2 + 16);
}

__global__ void __launch_bounds__(kBwdThreads, 2) attn_backward_dq_wgmma(Bwd a) {
#ifdef AUTOTP_WGMMA
  constexpr int HD = kWgHd, BR = kDqRows, NT = kBwdThreads;
  constexpr uint32_t kDsTile = kDs * kDs * 2;
  static_assert(kBc == kDs && BR == 2 * kDs && kDs == 64, "a warp group per 64-query dS tile");
  extern __shared__ __align__(1024) unsigned char smem[];
  const uint32_t Ks = smem_u32(smem), Ss = Ks + kDqStages * kWgTile;

  const Heads& g = a.g;
  const int64_t T = g.T, ld = g.ld(), nt = (T + kDs - 1) / kDs;
  const Work w =
      decode(blockIdx.x, gridDim.x, g.nq, (T + BR - 1) / BR, true, a.u0 * (g.nq / g.nkv));
  const int gi = warpgroup_uniform(), t = threadIdx.x % 128, warp = t / 32, lane = threadIdx.x % 32;
  const int64_t qt = w.tile * 2 + gi;  // the group's query tile
  const int64_t i0 = qt * kDs + 16 * warp + lane / 4;
  const bf16* kg = a.qkv + g.k(w.b, g.kv_of(w.h));

  auto load = [&](int kt, uint32_t buf) {
    load_tile_wg<NT>(Ks + buf * kWgTile, kg, ld, int64_t(kt) * kBc, T, threadIdx.x);
    if (qt < nt && kt <= qt) {  // the group's dS^T tile (qt, kt): 64 rows of 128 bytes
      const bf16* src = ds_tile(a, w.b, w.h, qt, kt);
      const uint32_t dst = Ss + (2 * buf + gi) * kDsTile;
#pragma unroll
      for (int k = 0; k < kDs * 8 / 128; ++k) {
        const int q = t + k * 128, r = q / 8, c = q % 8;
        cp_async16(dst + sw128_offset<kDs>(r, 8 * c), src + r * kDs + 8 * c, true);
      }
    }
  };
  float dq[Hd<HD>::ND][4] = {};
  const int nk = int((min(T, w.tile * BR + BR) + kBc - 1) / kBc);
  pipeline_mbar<kDqStages, NT>(
      nk, Ss + 2 * kDqStages * kDsTile, load, [&](int kt, uint32_t buf, auto&& next) {
        if (qt >= nt || kt > qt) {  // no query of the group, or every key after them
          next();
          return;
        }
        const uint64_t ds0 = wgmma_desc_sw128(Ss + (2 * buf + gi) * kDsTile, kDsTile, 1024);
        const uint64_t kd = desc_mn(Ks + buf * kWgTile);
        float(&dqf)[64] = reinterpret_cast<float(&)[64]>(dq);
        wgmma_fence_operand(dqf);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBc / 16; ++kk)  // dQ += dS K over the tile's keys
          wgmma_m64n128k16_ss<1, 1>(dqf, desc_mn_at(ds0, kk), desc_mn_at(kd, kk));
        wgmma_commit();
        next();
        wgmma_wait<0>();
        wgmma_fence_operand(dqf);
      });
  store_rows<HD>(dq, a.dqkv, g.q(w.b, w.h), ld, i0, T, a.scale, a.scale);
#else
  __trap();  // launched only where compiled for sm_90a (wgmma_attention())
#endif
}

// Stored dS: the dK/dV blocks of a pass, then its dQ blocks (a second launch: they read what
// the first wrote).
template <int HD>
__global__ void __launch_bounds__(kBwdThreads) attn_backward_dkv_ds(Bwd a) {
  extern __shared__ __align__(128) unsigned char smem[];
  dkv_block<HD, true>(smem, blockIdx.x, gridDim.x, a);
}
template <int HD>
__global__ void __launch_bounds__(kBwdThreads) attn_backward_dq_ds(Bwd a) {
  extern __shared__ __align__(128) unsigned char smem[];
  dq_ds_block<HD>(smem, a);
}

// Recomputed dS (where storing it does not fit): one launch for both, the dK/dV blocks (the
// longest, a whole group of heads each) first, and the dQ blocks fill the SMs that their tail
// leaves idle.
template <int HD>
__global__ void __launch_bounds__(kBwdThreads)
    attn_backward_mma(Bwd a, unsigned n_dkv, unsigned n_dq) {
  extern __shared__ __align__(128) unsigned char smem[];
  if (blockIdx.x < n_dkv)
    dkv_block<HD, false>(smem, blockIdx.x, n_dkv, a);
  else
    dq_block<HD>(smem, blockIdx.x - n_dkv, n_dq, a);
}

// (batch, kv head) units whose dS fits the budget at once (AUTOTP_ATTN_DS_BYTES, default
// 512 MiB: 415 MB at Phi-4-mini's 24 heads x 2048 x micro 4); 0: recompute dS in the dQ
// blocks (long sequences: the stored dS grows with T^2).
int64_t ds_units_per_pass(const Heads& g, int64_t B) {
  const char* env = std::getenv("AUTOTP_ATTN_DS_BYTES");
  const int64_t budget = env ? std::atoll(env) : int64_t(512) << 20;
  const int64_t unit = int64_t(g.nq / g.nkv) * ds_tiles(g.T) * kDs * kDs * int64_t(sizeof(bf16));
  return std::min(B * g.nkv, std::max(budget, int64_t(0)) / unit);
}

template <int HD>
void backward_hd(Bwd a, int64_t B, int64_t units_per_pass, cudaStream_t st) {
  const int64_t units = B * a.g.nkv, group = a.g.nq / a.g.nkv;
  if (units_per_pass == 0) {
    constexpr size_t smem = std::max(dkv_smem<HD>(), dq_smem<HD>());
    const int64_t n_dkv = blocks(a.g.T, kDkvRows, a.g.nkv, B);
    const int64_t n_dq = blocks(a.g.T, kDqRows, a.g.nq, B);
    auto kernel = attn_backward_mma<HD>;
    allow_smem(kernel, smem, "cudaFuncSetAttribute(attn_backward_mma)");
    kernel<<<grid_size(n_dkv + n_dq), kBwdThreads, smem, st>>>(a, unsigned(n_dkv), unsigned(n_dq));
    AUTOTP_LAUNCHED("attn_backward_mma");
    return;
  }
  constexpr size_t smem_kv = dkv_smem<HD>(), smem_q = dq_ds_smem<HD>();
  const bool wg = wgmma_attention(HD);
  if (wg) {
    allow_smem(attn_backward_dkv_wgmma, kDkvWgSmem, "cudaFuncSetAttribute(attn_dkv_wgmma)");
    allow_smem(attn_backward_dq_wgmma, dq_wg_smem(), "cudaFuncSetAttribute(attn_dq_wgmma)");
  } else {
    allow_smem(attn_backward_dkv_ds<HD>, smem_kv, "cudaFuncSetAttribute(attn_dkv_ds)");
    allow_smem(attn_backward_dq_ds<HD>, smem_q, "cudaFuncSetAttribute(attn_dq_ds)");
  }
  for (a.u0 = 0; a.u0 < units; a.u0 += units_per_pass) {
    const int64_t n = std::min(units_per_pass, units - a.u0);
    if (wg) {
      attn_backward_dkv_wgmma<<<grid_size(blocks(a.g.T, kDkvWgKeys, 1, n)), kBwdThreads, kDkvWgSmem,
                                st>>>(a);
      AUTOTP_LAUNCHED("attn_backward_dkv_wgmma");
    } else {
      attn_backward_dkv_ds<HD>
          <<<grid_size(blocks(a.g.T, kDkvRows, 1, n)), kBwdThreads, smem_kv, st>>>(a);
      AUTOTP_LAUNCHED("attn_backward_dkv_ds");
    }
    const unsigned grid_q = grid_size(blocks(a.g.T, kDqRows, 1, n * group));
    if (wg) {
      attn_backward_dq_wgmma<<<grid_q, kBwdThreads, dq_wg_smem(), st>>>(a);
      AUTOTP_LAUNCHED("attn_backward_dq_wgmma");
    } else {
      attn_backward_dq_ds<HD><<<grid_q, kBwdThreads, smem_q, st>>>(a);
      AUTOTP_LAUNCHED("attn_backward_dq_ds");
    }
  }
}

}  // namespace

size_t tc_attention_scratch_bytes(const Heads& g, int64_t B, bool backward) {
  // qkv in bf16 (unless it is narrow); in the backward then dout, then the stored dS.
  const int64_t cols = backward ? g.ld() + g.ldo() : g.ld();
  const int64_t ds =
      backward ? ds_units_per_pass(g, B) * (g.nq / g.nkv) * ds_tiles(g.T) * kDs * kDs : 0;
  return sizeof(bf16) * (size_t(B * g.T) * size_t(cols) + size_t(ds));
}

void tc_attention_backward(const float* dout, const bf16* dout16, const float* qkv,
                           const bf16* qkv16, const float* out, const bf16* out16, const float* lse,
                           float* D, const Heads& g, int64_t B, cudaStream_t stream, void* scratch,
                           float* dqkv, bf16* dqkv16) {
  // qkv then dout; both parts start 16-byte aligned (ld, ldo are multiples of 16).
  bf16* dout_copy = static_cast<bf16*>(scratch) + B * g.T * g.ld();
  if (!qkv16) {
    to_bf16_cols(qkv, g.ld(), 0, g.ld(), B * g.T, static_cast<bf16*>(scratch), stream);
    qkv16 = static_cast<const bf16*>(scratch);
  }
  const int threads = int(std::min<int64_t>(1024, (g.ldo() / 8 + 31) / 32 * 32));
  with_input(dout16, dout, [&](auto* d) {
    with_input(out16, out, [&](auto* o) {
      attn_prep_dout_kernel<<<unsigned(B * g.T), threads, 0, stream>>>(d, o, g, dout_copy, D);
    });
  });
  AUTOTP_LAUNCHED("attn_prep_dout_kernel");
  if (!dout16) dout16 = dout_copy;
  // The caller sized the scratch with the same budget (tc_attention_scratch_bytes).
  const int64_t upp = ds_units_per_pass(g, B);
  bf16* ds = upp ? dout_copy + B * g.T * g.ldo() : nullptr;
  const Bwd a{qkv16, dout16, lse, D, g, 1.0f / sqrtf(float(g.hd)), {dqkv, dqkv16}, ds, 0};
  check(with_head_dim(TcDims{}, g.hd,
                      [&](auto c) { backward_hd<decltype(c)::value>(a, B, upp, stream); }),
        "cuda attention: no tensor-core kernel for head_dim ", g.hd);
}

}  // namespace autotp::cuda
