// The tensor-core attention forward (attention_mma.cuh has the design).
#include "kernels/cuda/attention_mma.cuh"

namespace autotp::cuda {

namespace {

// ---------------------------------------------------------------- forward

// The forward's arguments: qkv in bf16 (the narrow qkv, or a copy in scratch).
struct Fwd {
  const bf16* qkv;
  Heads g;
  float scale;
  Out out;
  float* lse;
};

// A block: 4 warps of 32 query rows each (two row tiles of 16 sharing each K and V fragment:
// half the shared-memory reads per mma of 16-row warps, and twice the independent mma chains).
constexpr int kFwdWarps = 4, kFwdMt = 2;

// Shared memory: Q [16 MT W] rows, K and V [2][kBc] rows each.
template <int HD>
constexpr size_t forward_smem() {
  return Hd<HD>::kRow * (16 * kFwdMt * kFwdWarps + 4 * kBc);
}

// The steps both forward kernels share, on the lane's MT row tiles in accumulator layout
// (rows i0 + 16 mt and i0 + 16 mt + 8; columns c0, c0 + 1 of each n-tile).

// In a tile crossing the diagonal, keys j > i get score -inf (key c of the tile is i0 + rel + c).
template <int MT, int NB>
__device__ __forceinline__ void mask_future(float (&s)[MT][NB][4], int rel, int c0) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (rel + nb * 8 + c0 + (e & 1) > 16 * mt + 8 * (e >> 1)) s[mt][nb][e] = -INFINITY;
}

// One key tile of the online softmax per row (mt, r) (elements 2 r, 2 r + 1 of s[mt]): the scores
// become p = 2^(s sl2 - m sl2), the row max m and this lane's sum l advance, and O is rescaled,
// only when some row's max grew (else every alpha is exactly 1).
template <int HD, int MT, int NB>
__device__ __forceinline__ void online_softmax(float (&s)[MT][NB][4], float (&m)[MT][2],
                                               float (&l)[MT][2], float (&o)[MT][Hd<HD>::ND][4],
                                               float sl2) {
  float alpha[MT][2];
  bool grew = false;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = m[mt][r];
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) mx = fmaxf(mx, fmaxf(s[mt][nb][2 * r], s[mt][nb][2 * r + 1]));
      mx = quad_max(mx);
      grew |= mx > m[mt][r];
      alpha[mt][r] = ex2((m[mt][r] - mx) * sl2);  // 0 while m = -inf
      m[mt][r] = mx;
      const float nm = mx * sl2;
      float sum = 0.0f;
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int e = 2 * r; e < 2 * r + 2; ++e) {
          s[mt][nb][e] = ex2(fmaf(s[mt][nb][e], sl2, -nm));
          sum += s[mt][nb][e];
        }
      l[mt][r] = l[mt][r] * alpha[mt][r] + sum;
    }
  if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int dn = 0; dn < Hd<HD>::ND; ++dn)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[mt][dn][e] *= alpha[mt][e >> 1];
  }
}

// The end: out = O / l over the lane's rows below T, and lse = m scale + log l (quad-summed l).
template <int HD, int MT>
__device__ __forceinline__ void store_out(const float (&o)[MT][Hd<HD>::ND][4],
                                          const float (&m)[MT][2], const float (&l)[MT][2],
                                          const Fwd& a, const Work& w, int64_t i0) {
  const Heads& g = a.g;
  float* L = a.lse + g.stat(w.b, w.h);
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int64_t i = i0 + 16 * mt;
    const float l0 = quad_sum(l[mt][0]), l1 = quad_sum(l[mt][1]);
    store_rows<HD>(o[mt], a.out, g.o(w.b, w.h), g.ldo(), i, g.T, 1.0f / l0, 1.0f / l1);
    if (threadIdx.x % 4 == 0) {
      if (i < g.T) L[i] = m[mt][0] * a.scale + logf(l0);
      if (i + 8 < g.T) L[i + 8] = m[mt][1] * a.scale + logf(l1);
    }
  }
}

// 16 MT W query rows of one (batch, head), streaming the key tiles up to the diagonal.
template <int HD>
__global__ void __launch_bounds__(kFwdWarps * 32) attn_forward_mma(Fwd a) {
  using C = Hd<HD>;
  constexpr int W = kFwdWarps, MT = kFwdMt, BC = kBc, WR = 16 * MT, BR = WR * W, NT = 32 * W;
  constexpr int NB = BC / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t Qs = smem_u32(smem), Ks = Qs + BR * C::kRow, Vs = Ks + 2 * BC * C::kRow;

  const Heads& g = a.g;
  const float scale = a.scale;
  const int64_t T = g.T, ld = g.ld();
  const Work w = decode(blockIdx.x, gridDim.x, g.nq, (T + BR - 1) / BR, true);
  const int64_t q0 = w.tile * BR;
  const int kvh = g.kv_of(w.h), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // The lane's rows: i0 + 16 mt and i0 + 16 mt + 8; its columns c0, c0 + 1 of each n-tile.
  const int64_t row0 = q0 + WR * warp, i0 = row0 + lane / 4;
  const int c0 = 2 * (lane % 4);
  const bf16 *kg = a.qkv + g.k(w.b, kvh), *vg = a.qkv + g.v(w.b, kvh);

  auto load_kv = [&](int kt) { load_kv_tiles<HD, BC, NT>(Ks, Vs, kg, vg, ld, kt, T); };
  load_tile<HD, BR, NT>(Qs, a.qkv + g.q(w.b, w.h), ld, q0, T, threadIdx.x);
  load_kv(0);
  cp_commit();

  const uint32_t qa = Qs + WR * warp * C::kRow + off_a<HD>(lane);
  float o[MT][C::ND][4] = {};
  float m[MT][2], l[MT][2] = {};  // per row: raw-score max, partial sum (this lane's columns)
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) m[mt][0] = m[mt][1] = -INFINITY;
  const float sl2 = scale * kLog2e;  // p = 2^(s sl2 - m sl2) = e^(scale (s - m))

  // Key tiles up to the block's last row; key 0 is unmasked for every row, so m is finite
  // from tile 0 on (which no warp skips).
  const int nk = int((min(T, q0 + BR) + BC - 1) / BC);
  pipeline(
      nk, load_kv,
      [&](int kt) {
        const int64_t k0 = int64_t(kt) * BC;
        if (k0 > row0 + WR - 1) return;  // every key of the tile is after the warp's rows
        const uint32_t kt_s = Ks + (kt & 1) * BC * C::kRow, vt_s = Vs + (kt & 1) * BC * C::kRow;
        const int rel = int(k0 - i0);  // in the diagonal tile: key c of the tile is i0 + rel + c
        with_part(k0 + BC - 1 > row0, [&](auto part) {
          constexpr bool kPart = decltype(part)::value;
          // Column pairs up to the warp's last row.
          const int hi = kPart ? min(NB / 2, (int(row0 - k0) + WR - 1) / 16 + 1) : NB / 2;
          float s[MT][NB][4] = {};
          mma_abt_m<HD, MT, NB, kPart>(
              s,
              [&](int mt, int kd, uint32_t(&a)[4]) { ldsm4(a, qa + mt * 16 * C::kRow + kd * 32); },
              kt_s + off_b<HD>(lane), 0, hi);
          if constexpr (kPart) mask_future(s, rel, c0);
          online_softmax<HD>(s, m, l, o, sl2);
          mma_px_m<HD, MT, NB, kPart>(o, s, vt_s + off_a<HD>(lane), 0, hi);
        });
      },
      [] { __syncthreads(); });

  store_out<HD>(o, m, l, a, w, i0);
}

// ---------------------------------------------------------------- forward on wgmma (sm_90a)
// The same flash-attention forward with each warpgroup owning 64 query rows: S = Q K^T reads Q
// and K from shared memory, O += P V takes P from registers (the softmax leaves it in mma.sync's
// accumulator layout, which is wgmma's) and V transposed. Two warpgroups share each K and V tile.
constexpr int kFwdGroups = 2, kFwdWgThreads = 128 * kFwdGroups;

// Shared memory: Q [kFwdGroups] tiles, K and V [2] tiles each, then pipeline_mbar's 4 mbarriers.
constexpr size_t forward_wg_smem() {
  return size_t(kWgTile) * (kFwdGroups + 4) + 8 * 4;
}

// Two blocks per SM (128 registers, a few spilled): one block's softmax runs while the other's
// products do (attention 13.7 -> 13.1 ms per step against one block of 174 registers).
__global__ void __launch_bounds__(kFwdWgThreads, 2) attn_forward_wgmma(Fwd a) {
#ifdef AUTOTP_WGMMA
  constexpr int HD = kWgHd, BC = 64, BR = 64 * kFwdGroups, NB = BC / 8;
  using C = Hd<HD>;
  extern __shared__ __align__(1024) unsigned char smem[];
  const uint32_t Qs = smem_u32(smem), Ks = Qs + kFwdGroups * kWgTile, Vs = Ks + 2 * kWgTile;

  const Heads& g = a.g;
  const float scale = a.scale;
  const int64_t T = g.T, ld = g.ld();
  const Work w = decode(blockIdx.x, gridDim.x, g.nq, (T + BR - 1) / BR, true);
  const int gi = warpgroup_uniform(), t = threadIdx.x % 128;
  const int64_t q0 = w.tile * BR, qg = q0 + 64 * gi;  // the block's and the group's first row
  const int kvh = g.kv_of(w.h), warp = t / 32, lane = threadIdx.x % 32;
  const int64_t i0 = qg + 16 * warp + lane / 4;  // the lane's rows i0, i0 + 8
  const int c0 = 2 * (lane % 4);
  const bf16 *kg = a.qkv + g.k(w.b, kvh), *vg = a.qkv + g.v(w.b, kvh);
  const uint32_t qt_s = Qs + gi * kWgTile;

  auto load_kv = [&](int kt, uint32_t buf) {
    const uint32_t off = buf * kWgTile;
    load_tile_wg<kFwdWgThreads>(Ks + off, kg, ld, int64_t(kt) * BC, T, threadIdx.x);
    load_tile_wg<kFwdWgThreads>(Vs + off, vg, ld, int64_t(kt) * BC, T, threadIdx.x);
  };
  // Lands with load_kv(0): its full barrier counts each thread's earlier copies too.
  load_tile_wg<128>(qt_s, a.qkv + g.q(w.b, w.h), ld, qg, T, t);

  // One row tile of the helpers above (a warp's 16 rows of the group's 64).
  float o[1][C::ND][4] = {};
  float m[1][2] = {{-INFINITY, -INFINITY}}, l[1][2] = {};  // per row: raw max, this lane's sum
  const float sl2 = scale * kLog2e;

  const int nk = int((min(T, q0 + BR) + BC - 1) / BC);
  pipeline_mbar<2, kFwdWgThreads>(
      nk, Vs + 2 * kWgTile, load_kv, [&](int kt, uint32_t buf, auto&& next) {
        const int64_t k0 = int64_t(kt) * BC;
        if (k0 > qg + 63) {  // every key after the group's rows (the whole group skips)
          next();
          return;
        }
        const uint32_t kt_s = Ks + buf * kWgTile, vt_s = Vs + buf * kWgTile;
        float s[1][NB][4];
        float(&sf)[32] = reinterpret_cast<float(&)[32]>(s);
        float(&of)[64] = reinterpret_cast<float(&)[64]>(o);
        const uint64_t dq0 = desc_k(qt_s), dk0 = desc_k(kt_s), dv0 = desc_mn(vt_s);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk)
          wgmma_m64n64k16_ss<0>(sf, desc_k_at(dq0, kk), desc_k_at(dk0, kk), kk > 0);
        wgmma_commit();
        next();
        wgmma_wait<0>();
        wgmma_fence_operand(sf);
        const int rel = int(k0 - i0);  // key c of the tile is i0 + rel + c
        if (k0 + BC - 1 > qg) mask_future(s, rel, c0);
        online_softmax<HD>(s, m, l, o, sl2);
        uint32_t f[NB / 2][4];
#pragma unroll
        for (int kk = 0; kk < NB / 2; ++kk) a_frag(s[0], kk, f[kk]);
        wgmma_fence_operand(of);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < NB / 2; ++kk)  // O += P V
          wgmma_m64n128k16_rs<1>(of, f[kk], desc_mn_at(dv0, kk));
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_fence_operand(of);
      });

  store_out<HD>(o, m, l, a, w, i0);
#else
  __trap();  // launched only where compiled for sm_90a (wgmma_attention())
#endif
}

template <int HD>
void forward_hd(const Fwd& a, int64_t B, cudaStream_t st) {
  if (wgmma_attention(HD)) {
    constexpr size_t smem = forward_wg_smem();
    allow_smem(attn_forward_wgmma, smem, "cudaFuncSetAttribute(attn_forward_wgmma)");
    attn_forward_wgmma<<<grid_size(blocks(a.g.T, 64 * kFwdGroups, a.g.nq, B)), kFwdWgThreads, smem,
                         st>>>(a);
    AUTOTP_LAUNCHED("attn_forward_wgmma");
    return;
  }
  constexpr size_t smem = forward_smem<HD>();
  allow_smem(attn_forward_mma<HD>, smem, "cudaFuncSetAttribute(attn_forward_mma)");
  attn_forward_mma<HD>
      <<<grid_size(blocks(a.g.T, 16 * kFwdMt * kFwdWarps, a.g.nq, B)), 32 * kFwdWarps, smem, st>>>(
          a);
  AUTOTP_LAUNCHED("attn_forward_mma");
}

}  // namespace

bool tc_attention_applies(int64_t hd, const void* a, const void* b, const void* c, const void* d) {
  // Read per call (cheap next to a launch) so that a test can time both paths in one process.
  return std::getenv("AUTOTP_ATTN_FP32") == nullptr && with_head_dim(TcDims{}, hd, [](auto) {}) &&
         aligned16(a, b, c, d);
}

void tc_attention_forward(const float* qkv, const bf16* qkv16, const Heads& g, int64_t B,
                          cudaStream_t stream, void* scratch, float* out, bf16* out16, float* lse) {
  if (!qkv16) {
    to_bf16_cols(qkv, g.ld(), 0, g.ld(), B * g.T, static_cast<bf16*>(scratch), stream);
    qkv16 = static_cast<const bf16*>(scratch);
  }
  const Fwd a{qkv16, g, 1.0f / sqrtf(float(g.hd)), {out, out16}, lse};
  check(
      with_head_dim(TcDims{}, g.hd, [&](auto c) { forward_hd<decltype(c)::value>(a, B, stream); }),
      "cuda attention: no tensor-core kernel for head_dim ", g.hd);
}

}  // namespace autotp::cuda
