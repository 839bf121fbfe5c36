// Causal self-attention with grouped KV heads as fused flash-style kernels (fp32 math on tiles
// in shared memory; no T x T matrix ever reaches memory).
// Head dims 16, 32, 64 and 128 run on the bf16 tensor-core kernels of attention_tc_*.cu instead
// (same structure); these fp32 kernels serve the other head dims, unaligned buffers, and
// AUTOTP_ATTN_FP32=1 (a reference to compare against).
//
// Forward (one block per 64 query rows of one (batch, head)): stream the key/value tiles up to
// the diagonal, keeping per row the running max m, the running sum l of exp(s - m) and the
// unnormalized output acc (online softmax):
//   s_j = scale * q.k_j;  m' = max(m, max_j s_j);  acc = acc * e^(m - m') + sum_j e^(s_j - m') v_j
//   l = l * e^(m - m') + sum_j e^(s_j - m');  out = acc / l;  lse = m + log(l).
// Backward (flash-attention 2): P_ij = exp(s_ij - lse_i) is recomputed from the saved lse, and
// D_i = sum_d dO_id O_id (= sum_j P_ij dP_ij); with dP_ij = dO_i.v_j, dS_ij = P_ij (dP_ij - D_i):
//   dQ_i = scale * sum_j dS_ij k_j            (one block per query tile, loops over key tiles)
//   dK_j = scale * sum_i dS_ij q_i, dV_j = sum_i P_ij dO_i
//                                             (one block per key tile and kv head, looping over
//                                              the query heads of its group and query tiles)
// so every output element is written by exactly one thread: no atomics, deterministic, and
// dqkv is overwritten as the interface says.
//
// Threads: 256 per block, 4 per tile row (kTpr); a row's 4 threads are adjacent lanes of one
// warp, so their reductions are two shuffles. Thread t of a row owns the head dims d with
// d % 4 == t (interleaved, so the 4 lanes read adjacent shared-memory words) and the tile
// columns c with c % 4 == t. Shared tiles have rows padded to HD + 1 floats so that the 4 lanes
// reading 4 different rows at the same d hit 4 different banks.
#include <cmath>
#include <type_traits>

#include "kernels/cuda/attention.cuh"

namespace autotp::cuda {

namespace {

constexpr int kRows = 64;  // tile rows owned by a block (queries, or keys in dK/dV)
constexpr int kTpr = 4;    // threads per row
constexpr int kAttnThreads = kRows * kTpr;

// Tile sizes per head dim: the streamed tile is narrower at hd 128 to bound shared memory.
template <int HD>
struct Tile {
  static_assert(HD % kTpr == 0, "head_dim must be a multiple of 4");
  static constexpr int LD = HD + 1;               // padded row stride in shared memory
  static constexpr int ND = HD / kTpr;            // head dims per thread
  static constexpr int BS = HD >= 128 ? 32 : 64;  // rows of the streamed tile
  static constexpr int NS = BS / kTpr;            // streamed rows per thread
  static constexpr int LP = BS + 1;               // padded stride of a [kRows][BS] tile
};

// Rows [r0, r0 + rows) of one head (row stride ld, zeros from row T on) -> s[rows][HD + 1].
template <int HD>
__device__ void load_tile(float* s, const float* src, int64_t ld, int64_t r0, int rows, int64_t T) {
  for (int e = threadIdx.x; e < rows * HD; e += blockDim.x) {
    const int r = e / HD, d = e % HD;
    s[r * (HD + 1) + d] = r0 + r < T ? src[(r0 + r) * ld + d] : 0.0f;
  }
}

// Sum / max over the kTpr lanes of a row.
__device__ inline float row_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
__device__ inline float row_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

// s[c] = a . x_(t + 4c) over the head dims: a is one row of the block's own tile, x a streamed
// tile (shared memory, rows HD + 1 apart). One load of a per NS products.
template <int HD, int NS>
__device__ void dots(const float* a, const float* x, int t, float* s) {
#pragma unroll
  for (int c = 0; c < NS; ++c) s[c] = 0.0f;
  for (int d = 0; d < HD; ++d) {
    const float ad = a[d];
#pragma unroll
    for (int c = 0; c < NS; ++c) s[c] += ad * x[(t + c * kTpr) * (HD + 1) + d];
  }
}

// acc[dd] += sum_j w[j] * x[j, dd * 4 + t] over the `rows` rows of tile x (this thread's dims).
template <int HD>
__device__ void accumulate_rows(float* acc, const float* w, const float* x, int rows, int t) {
  for (int j = 0; j < rows; ++j) {
    const float wj = w[j];
#pragma unroll
    for (int dd = 0; dd < HD / kTpr; ++dd) acc[dd] += wj * x[j * (HD + 1) + dd * kTpr + t];
  }
}

template <int HD>
__global__ void __launch_bounds__(kAttnThreads)
    attn_forward_kernel(const float* __restrict__ qkv, Heads g, float scale,
                        float* __restrict__ out, float* __restrict__ lse) {
  using C = Tile<HD>;
  extern __shared__ float sm[];
  float* Qs = sm;                  // [kRows][LD]
  float* Ks = Qs + kRows * C::LD;  // [BS][LD]
  float* Vs = Ks + C::BS * C::LD;  // [BS][LD]
  float* Ps = Vs + C::BS * C::LD;  // [kRows][LP]

  // The last query tiles have the most keys: start them first.
  const int64_t q0 = int64_t(gridDim.x - 1 - blockIdx.x) * kRows, T = g.T;
  const int h = blockIdx.y, b = blockIdx.z, kvh = g.kv_of(h);
  const int r = threadIdx.x / kTpr, t = threadIdx.x % kTpr;
  const int64_t i = q0 + r;

  load_tile<HD>(Qs, qkv + g.q(b, h), g.ld(), q0, kRows, T);
  float m = -INFINITY, l = 0.0f, acc[C::ND];
#pragma unroll
  for (int dd = 0; dd < C::ND; ++dd) acc[dd] = 0.0f;

  // Keys up to the tile's last query (causal); key 0 is in the first tile and unmasked for
  // every row, so m is finite from the first tile on.
  const int64_t kend = min(T, q0 + kRows);
  for (int64_t k0 = 0; k0 < kend; k0 += C::BS) {
    __syncthreads();  // the previous tile's K, V, P are no longer read
    load_tile<HD>(Ks, qkv + g.k(b, kvh), g.ld(), k0, C::BS, T);
    load_tile<HD>(Vs, qkv + g.v(b, kvh), g.ld(), k0, C::BS, T);
    __syncthreads();

    float s[C::NS];
    dots<HD, C::NS>(Qs + r * C::LD, Ks, t, s);
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < C::NS; ++c) {
      const int64_t j = k0 + t + c * kTpr;
      s[c] = (j <= i && j < T) ? s[c] * scale : -INFINITY;
      mx = fmaxf(mx, s[c]);
    }
    const float mn = fmaxf(m, row_max(mx));
    const float alpha = expf(m - mn);  // 0 on the first tile (m = -inf)
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < C::NS; ++c) {
      const float p = expf(s[c] - mn);  // masked: exp(-inf) = 0
      Ps[r * C::LP + t + c * kTpr] = p;
      sum += p;
    }
    l = l * alpha + row_sum(sum);
    m = mn;
#pragma unroll
    for (int dd = 0; dd < C::ND; ++dd) acc[dd] *= alpha;
    __syncwarp();  // the row's P was written by the lanes of this warp
    accumulate_rows<HD>(acc, Ps + r * C::LP, Vs, C::BS, t);
  }
  if (i < T) {
    const float inv = 1.0f / l;
    float* o = out + g.o(b, h) + i * g.ldo();
#pragma unroll
    for (int dd = 0; dd < C::ND; ++dd) o[dd * kTpr + t] = acc[dd] * inv;
    if (t == 0) lse[g.stat(b, h) + i] = m + logf(l);
  }
}

// D[b, h, i] = sum_d dO[b, i, h, d] * O[b, i, h, d]: one warp per (row, head), grid-stride.
__global__ void attn_delta_kernel(const float* dout, const float* out, Heads g, int64_t B,
                                  float* D) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) / 32, n = B * g.T * g.nq;
  // w is uniform across a warp (blockDim is a multiple of 32), so the shuffles see all lanes.
  for (int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; w < n; w += warps) {
    const int64_t row = w / g.nq;  // b * T + i
    const int h = int(w % g.nq), b = int(row / g.T);
    const int64_t i = row % g.T;
    const int64_t off = g.o(b, h) + i * g.ldo();
    float acc = 0.0f;
    for (int d = lane; d < g.hd; d += 32) acc += dout[off + d] * out[off + d];
    acc = warp_sum(acc);
    if (lane == 0) D[g.stat(b, h) + i] = acc;
  }
}

// dQ for 64 query rows of one (batch, head), streaming key tiles up to the diagonal.
template <int HD>
__global__ void __launch_bounds__(kAttnThreads)
    attn_backward_dq_kernel(const float* __restrict__ dout, const float* __restrict__ qkv,
                            const float* __restrict__ lse, const float* __restrict__ D, Heads g,
                            float scale, float* __restrict__ dqkv) {
  using C = Tile<HD>;
  extern __shared__ float sm[];
  float* Qs = sm;                   // [kRows][LD]
  float* dOs = Qs + kRows * C::LD;  // [kRows][LD]
  float* Ks = dOs + kRows * C::LD;  // [BS][LD]
  float* Vs = Ks + C::BS * C::LD;   // [BS][LD]
  float* dSs = Vs + C::BS * C::LD;  // [kRows][LP]

  const int64_t q0 = int64_t(gridDim.x - 1 - blockIdx.x) * kRows, T = g.T;
  const int h = blockIdx.y, b = blockIdx.z, kvh = g.kv_of(h);
  const int r = threadIdx.x / kTpr, t = threadIdx.x % kTpr;
  const int64_t i = q0 + r;

  load_tile<HD>(Qs, qkv + g.q(b, h), g.ld(), q0, kRows, T);
  load_tile<HD>(dOs, dout + g.o(b, h), g.ldo(), q0, kRows, T);
  const float Li = i < T ? lse[g.stat(b, h) + i] : 0.0f, Di = i < T ? D[g.stat(b, h) + i] : 0.0f;
  float acc[C::ND];
#pragma unroll
  for (int dd = 0; dd < C::ND; ++dd) acc[dd] = 0.0f;

  const int64_t kend = min(T, q0 + kRows);
  for (int64_t k0 = 0; k0 < kend; k0 += C::BS) {
    __syncthreads();
    load_tile<HD>(Ks, qkv + g.k(b, kvh), g.ld(), k0, C::BS, T);
    load_tile<HD>(Vs, qkv + g.v(b, kvh), g.ld(), k0, C::BS, T);
    __syncthreads();

    float s[C::NS], dp[C::NS];
    dots<HD, C::NS>(Qs + r * C::LD, Ks, t, s);    // q_i . k_j
    dots<HD, C::NS>(dOs + r * C::LD, Vs, t, dp);  // dO_i . v_j
#pragma unroll
    for (int c = 0; c < C::NS; ++c) {
      const int64_t j = k0 + t + c * kTpr;
      const float p = (j <= i && j < T && i < T) ? expf(s[c] * scale - Li) : 0.0f;
      dSs[r * C::LP + t + c * kTpr] = p * (dp[c] - Di);
    }
    __syncwarp();
    accumulate_rows<HD>(acc, dSs + r * C::LP, Ks, C::BS, t);
  }
  if (i < T) {
    float* dq = dqkv + g.q(b, h) + i * g.ld();
#pragma unroll
    for (int dd = 0; dd < C::ND; ++dd) dq[dd * kTpr + t] = acc[dd] * scale;
  }
}

// dK, dV for 64 key rows of one (batch, kv head): the query heads of its group and the query
// tiles from the diagonal on are streamed past.
template <int HD>
__global__ void __launch_bounds__(kAttnThreads)
    attn_backward_dkv_kernel(const float* __restrict__ dout, const float* __restrict__ qkv,
                             const float* __restrict__ lse, const float* __restrict__ D, Heads g,
                             float scale, float* __restrict__ dqkv) {
  using C = Tile<HD>;
  extern __shared__ float sm[];
  float* Ks = sm;                   // [kRows][LD]
  float* Vs = Ks + kRows * C::LD;   // [kRows][LD]
  float* Qs = Vs + kRows * C::LD;   // [BS][LD]
  float* dOs = Qs + C::BS * C::LD;  // [BS][LD]
  float* Ps = dOs + C::BS * C::LD;  // [kRows][LP]
  float* dSs = Ps + kRows * C::LP;  // [kRows][LP]
  float* Ls = dSs + kRows * C::LP;  // [BS]
  float* Ds = Ls + C::BS;           // [BS]

  // The first key tiles see the most queries: they are block 0 onwards already.
  const int64_t k0 = int64_t(blockIdx.x) * kRows, T = g.T;
  const int kvh = blockIdx.y, b = blockIdx.z, group = g.nq / g.nkv;
  const int r = threadIdx.x / kTpr, t = threadIdx.x % kTpr;
  const int64_t j = k0 + r;

  load_tile<HD>(Ks, qkv + g.k(b, kvh), g.ld(), k0, kRows, T);
  load_tile<HD>(Vs, qkv + g.v(b, kvh), g.ld(), k0, kRows, T);
  float dk[C::ND], dv[C::ND];
#pragma unroll
  for (int dd = 0; dd < C::ND; ++dd) dk[dd] = dv[dd] = 0.0f;

  for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
    // Queries before k0 see none of these keys; k0 is a multiple of BS (BS divides kRows).
    for (int64_t q0 = k0; q0 < T; q0 += C::BS) {
      __syncthreads();
      load_tile<HD>(Qs, qkv + g.q(b, h), g.ld(), q0, C::BS, T);
      load_tile<HD>(dOs, dout + g.o(b, h), g.ldo(), q0, C::BS, T);
      for (int e = threadIdx.x; e < C::BS; e += blockDim.x) {
        Ls[e] = q0 + e < T ? lse[g.stat(b, h) + q0 + e] : 0.0f;
        Ds[e] = q0 + e < T ? D[g.stat(b, h) + q0 + e] : 0.0f;
      }
      __syncthreads();

      float s[C::NS], dp[C::NS];
      dots<HD, C::NS>(Ks + r * C::LD, Qs, t, s);    // k_j . q_i
      dots<HD, C::NS>(Vs + r * C::LD, dOs, t, dp);  // v_j . dO_i
#pragma unroll
      for (int c = 0; c < C::NS; ++c) {
        const int ci = t + c * kTpr;
        const int64_t i = q0 + ci;
        const float p = (j <= i && i < T) ? expf(s[c] * scale - Ls[ci]) : 0.0f;
        Ps[r * C::LP + ci] = p;
        dSs[r * C::LP + ci] = p * (dp[c] - Ds[ci]);
      }
      __syncwarp();
      accumulate_rows<HD>(dv, Ps + r * C::LP, dOs, C::BS, t);
      accumulate_rows<HD>(dk, dSs + r * C::LP, Qs, C::BS, t);
    }
  }
  if (j < T) {
    float* dkr = dqkv + g.k(b, kvh) + j * g.ld();
    float* dvr = dqkv + g.v(b, kvh) + j * g.ld();
#pragma unroll
    for (int dd = 0; dd < C::ND; ++dd) {
      dkr[dd * kTpr + t] = dk[dd] * scale;
      dvr[dd * kTpr + t] = dv[dd];
    }
  }
}

template <int HD>
size_t forward_smem() {
  using C = Tile<HD>;
  return sizeof(float) * size_t(kRows * C::LD + 2 * C::BS * C::LD + kRows * C::LP);
}
template <int HD>
size_t dq_smem() {
  using C = Tile<HD>;
  return sizeof(float) * size_t(2 * kRows * C::LD + 2 * C::BS * C::LD + kRows * C::LP);
}
template <int HD>
size_t dkv_smem() {
  using C = Tile<HD>;
  return sizeof(float) *
         size_t(2 * kRows * C::LD + 2 * C::BS * C::LD + 2 * kRows * C::LP + 2 * C::BS);
}

struct Launch {
  Heads g;
  int64_t B;
  cudaStream_t stream;
  dim3 grid(int64_t heads) const {
    return dim3(unsigned((g.T + kRows - 1) / kRows), unsigned(heads), unsigned(B));
  }
};

template <int HD>
void forward_hd(const Launch& L, const float* qkv, float* out, float* lse) {
  const size_t smem = forward_smem<HD>();
  allow_smem(attn_forward_kernel<HD>, smem, "cudaFuncSetAttribute(attn_forward_kernel)");
  attn_forward_kernel<HD><<<L.grid(L.g.nq), kAttnThreads, smem, L.stream>>>(
      qkv, L.g, 1.0f / sqrtf(float(HD)), out, lse);
  AUTOTP_LAUNCHED("attn_forward_kernel");
}

template <int HD>
void backward_hd(const Launch& L, const float* dout, const float* qkv, const float* lse,
                 const float* D, float* dqkv) {
  const float scale = 1.0f / sqrtf(float(HD));
  const size_t smem_q = dq_smem<HD>(), smem_kv = dkv_smem<HD>();
  allow_smem(attn_backward_dq_kernel<HD>, smem_q, "cudaFuncSetAttribute(attn_backward_dq)");
  allow_smem(attn_backward_dkv_kernel<HD>, smem_kv, "cudaFuncSetAttribute(attn_backward_dkv)");
  attn_backward_dq_kernel<HD>
      <<<L.grid(L.g.nq), kAttnThreads, smem_q, L.stream>>>(dout, qkv, lse, D, L.g, scale, dqkv);
  AUTOTP_LAUNCHED("attn_backward_dq_kernel");
  attn_backward_dkv_kernel<HD>
      <<<L.grid(L.g.nkv), kAttnThreads, smem_kv, L.stream>>>(dout, qkv, lse, D, L.g, scale, dqkv);
  AUTOTP_LAUNCHED("attn_backward_dkv_kernel");
}

// The head dims compiled in (each one is three kernels).
template <typename F>
void dispatch_hd(int64_t hd, F&& f) {
  if (!with_head_dim(HeadDims<8, 16, 32, 64, 96, 128>{}, hd, f))
    fail("cuda attention: head_dim ", hd,
         " is not compiled in (8, 16, 32, 64, 96, 128); add it to dispatch_hd in "
         "kernels/cuda/attention.cu");
}

void check_shape(int64_t B, int64_t T, int64_t nq, int64_t nkv, const char* op) {
  check(nkv > 0 && nq % nkv == 0, "cuda ", op, ": ", nq, " query heads are not a multiple of ", nkv,
        " kv heads");
  check(B <= 65535 && nq <= 65535 && (T + kRows - 1) / kRows <= INT32_MAX, "cuda ", op, ": batch ",
        B, " x heads ", nq, " x length ", T, " exceed the grid size");
}

}  // namespace

void CudaBackendImpl::attention_forward(const float* qkv, int64_t B, int64_t T, int64_t nq,
                                        int64_t nkv, int64_t hd, float* out, float* lse, Use use) {
  if (B <= 0 || T <= 0 || nq <= 0) return;
  check_shape(B, T, nq, nkv, "attention_forward");
  const Launch L{{T, int(nq), int(nkv), int(hd)}, B, stream_};
  const bool tc = tc_attention_applies(hd, qkv, out);
  const size_t n_qkv = size_t(B * T * (nq + 2 * nkv) * hd), n_out = size_t(B * T * nq * hd);
  const size_t n_lse = size_t(B * nq * T);
  void* s16 = tc ? scratch(Scratch::Attn16, tc_attention_scratch_bytes(L.g, B, false)) : nullptr;
  Timed t(*this, "attention");
  // A narrow qkv goes to the tensor-core kernels as it is; the fp32 ones get it widened.
  const __nv_bfloat16* qkv16 = narrow_of(qkv, n_qkv, false);
  const float* qkv32 = tc ? qkv : widened(qkv, n_qkv);
  wrote(lse, n_lse * sizeof(float));
  // The tensor-core kernels write a narrow out (bf16) when allowed; the fp32 ones write fp32,
  // into scratch and then rounded when out is to be narrow.
  __nv_bfloat16* out16 =
      narrow_output(out, n_out, use, {{qkv, n_qkv * sizeof(float)}, {lse, n_lse * sizeof(float)}});
  if (tc) return tc_attention_forward(qkv, qkv16, L.g, B, stream_, s16, out, out16, lse);
  float* out32 = out16 ? static_cast<float*>(scratch(Scratch::WideB, n_out * sizeof(float))) : out;
  dispatch_hd(hd, [&](auto c) { forward_hd<decltype(c)::value>(L, qkv32, out32, lse); });
  if (out16) to_bf16(out32, out16, n_out, stream_);
}

void CudaBackendImpl::attention_backward(const float* dout, const float* qkv, const float* out,
                                         const float* lse, int64_t B, int64_t T, int64_t nq,
                                         int64_t nkv, int64_t hd, float* dqkv, Use use) {
  if (B <= 0 || T <= 0 || nq <= 0) return;
  check_shape(B, T, nq, nkv, "attention_backward");
  const Launch L{{T, int(nq), int(nkv), int(hd)}, B, stream_};
  float* D = static_cast<float*>(scratch(Scratch::AttnD, size_t(B * nq * T) * sizeof(float)));
  const bool tc = tc_attention_applies(hd, dout, qkv, dqkv, out);
  const size_t n_qkv = size_t(B * T * (nq + 2 * nkv) * hd), n_out = size_t(B * T * nq * hd);
  const __nv_bfloat16* qkv16 = narrow_of(qkv, n_qkv, false);
  const __nv_bfloat16* out16 = narrow_of(out, n_out, false);
  const __nv_bfloat16* dout16 = narrow_of(dout, n_out, false);
  void* s16 = tc ? scratch(Scratch::Attn16, tc_attention_scratch_bytes(L.g, B, true)) : nullptr;
  Timed t(*this, "attention");
  const float* qkv32 = tc ? qkv : widened(qkv, n_qkv);
  const float* dout32 = tc ? dout : widened(dout, n_out, Scratch::WideB);
  const float* out32 = tc ? out : widened(out, n_out, Scratch::WideC);
  // The tensor-core kernels write a narrow dqkv (bf16) when allowed; the fp32 ones write fp32.
  __nv_bfloat16* dqkv16 = narrow_output(dqkv, n_qkv, tc ? use : Use::Any,
                                        {{dout, n_out * sizeof(float)},
                                         {qkv, n_qkv * sizeof(float)},
                                         {out, n_out * sizeof(float)},
                                         {lse, size_t(B * nq * T) * sizeof(float)}});
  if (tc)
    return tc_attention_backward(dout, dout16, qkv, qkv16, out, out16, lse, D, L.g, B, stream_, s16,
                                 dqkv, dqkv16);
  attn_delta_kernel<<<grid_for(size_t(B * T * nq) * 32), kThreads, 0, stream_>>>(dout32, out32, L.g,
                                                                                 B, D);
  AUTOTP_LAUNCHED("attn_delta_kernel");
  dispatch_hd(hd, [&](auto c) { backward_hd<decltype(c)::value>(L, dout32, qkv32, lse, D, dqkv); });
}

}  // namespace autotp::cuda
