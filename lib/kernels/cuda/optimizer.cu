// AdamW and the squared norm, fp32 (the math is in optim/adamw.hpp). The update uses
// round-to-nearest intrinsics so that nvcc cannot fuse a*b+c into an FMA: every operation
// rounds as in the CPU backend's loop, and the two backends step bit-identically.
#include <algorithm>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
struct AdamWArgs {
  AdamWStep s;
  bool decay;
  float grad_scale;
};

// One element: p, m, v updated in place from g.
__device__ __forceinline__ void adamw_one(float& p, float& m, float& v, float g,
                                          const AdamWArgs& a) {
  const AdamWStep& s = a.s;
  const float gi = __fmul_rn(g, a.grad_scale);
  const float pi = a.decay ? __fmul_rn(p, s.decay_factor) : p;
  // torch's lerp switches formula at weight 0.5 to stay exact near the end point.
  const float mi =
      s.one_minus_beta1 < 0.5f
          ? __fadd_rn(m, __fmul_rn(s.one_minus_beta1, __fsub_rn(gi, m)))
          : __fsub_rn(gi, __fmul_rn(__fsub_rn(gi, m), __fsub_rn(1.0f, s.one_minus_beta1)));
  // v = v * beta2 + (1 - beta2) * g * g
  const float vi =
      __fadd_rn(__fmul_rn(v, s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, gi), gi));
  // p += -lr/bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
  const float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
  p = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step_size, mi), den));
  m = mi;
  v = vi;
}

// Elements [0, n): scalar. `shadow`, when set, receives bf16(p) in the same pass. g is fp32 or
// a narrow (bf16) gradient.
template <typename G>
__global__ void adamw_kernel(float* p, float* m, float* v, const G* g, size_t n, AdamWArgs a,
                             __nv_bfloat16* shadow) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_one(pi, mi, vi, to_float(g[i]), a);
    p[i] = pi, m[i] = mi, v[i] = vi;
    if (shadow) shadow[i] = __float2bfloat16_rn(pi);
  }
}

// The same on n4 groups of 4 (every pointer 16-byte aligned, 8-byte for a bf16 g): 26-30 bytes
// per element move either way, but wide accesses get closer to the memory bandwidth.
template <typename G>
__global__ void adamw4_kernel(float4* p, float4* m, float4* v, const G* g, size_t n4, AdamWArgs a,
                              __nv_bfloat162* shadow) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
       i += size_t(gridDim.x) * blockDim.x) {
    float4 pi = p[i], mi = m[i], vi = v[i];
    float gi[4];
    load_k<4>(g + 4 * i, gi);
    adamw_one(pi.x, mi.x, vi.x, gi[0], a);
    adamw_one(pi.y, mi.y, vi.y, gi[1], a);
    adamw_one(pi.z, mi.z, vi.z, gi[2], a);
    adamw_one(pi.w, mi.w, vi.w, gi[3], a);
    p[i] = pi, m[i] = mi, v[i] = vi;
    if (shadow) {
      shadow[2 * i] = __floats2bfloat162_rn(pi.x, pi.y);
      shadow[2 * i + 1] = __floats2bfloat162_rn(pi.z, pi.w);
    }
  }
}

// Per-block partial sums of x^2 in double; a second pass adds the partials in a fixed order,
// so the result is deterministic. x is fp32 or narrow (bf16). The n4 groups of 4 come first,
// as 16-byte (bf16: 8-byte) loads: a scalar loop reached 2.5 of ~4.2 TB/s.
constexpr unsigned kSumBlocks = 1024;
template <typename T>
__global__ void sum_squares_kernel(const T* x, size_t n, double* partial) {
  __shared__ double red[32];
  double acc = 0.0;
  const size_t first = size_t(blockIdx.x) * blockDim.x + threadIdx.x,
               stride = size_t(gridDim.x) * blockDim.x;
  const size_t n4 = reinterpret_cast<uintptr_t>(x) % (4 * sizeof(T)) == 0 ? n / 4 : 0;
  for (size_t i = first; i < n4; i += stride) {
    float v[4];
    load_k<4>(x + 4 * i, v);
    acc += double(v[0]) * double(v[0]) + double(v[1]) * double(v[1]) + double(v[2]) * double(v[2]) +
           double(v[3]) * double(v[3]);
  }
  for (size_t i = 4 * n4 + first; i < n; i += stride) {
    const double v = to_float(x[i]);
    acc += v * v;
  }
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(double* partial, unsigned n) {
  __shared__ double red[32];
  double acc = 0.0;
  for (unsigned i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) partial[0] = acc;
}
}  // namespace

void CudaBackendImpl::adamw(float* p, float* m, float* v, const float* g, size_t n,
                            const AdamWStep& s, bool decay, float grad_scale) {
  if (!n) return;
  Timed t(*this, "optimizer");
  for (float* out : {p, m, v}) wrote(out, n * sizeof(float));
  const AdamWArgs a{s, decay, grad_scale};
  // Parameters with a bf16 copy get it written here, which spares params_changed() a pass.
  __nv_bfloat16* sh = shadow_of(p, n);
  if (sh) shadow_fresh_ += n;
  const __nv_bfloat16* g16 = narrow_of(g, n, false);
  with_input(g16, g, [&](auto* gp) {
    using G = std::remove_cv_t<std::remove_pointer_t<decltype(gp)>>;
    size_t done = 0;
    if (aligned16(p, m, v) && reinterpret_cast<uintptr_t>(gp) % (4 * sizeof(G)) == 0 && n >= 4) {
      const size_t n4 = n / 4;
      adamw4_kernel<<<grid_for(n4), kThreads, 0, stream_>>>(
          reinterpret_cast<float4*>(p), reinterpret_cast<float4*>(m), reinterpret_cast<float4*>(v),
          gp, n4, a, reinterpret_cast<__nv_bfloat162*>(sh));
      AUTOTP_LAUNCHED("adamw4_kernel");
      done = 4 * n4;
    }
    if (done < n) {
      adamw_kernel<<<grid_for(n - done), kThreads, 0, stream_>>>(
          p + done, m + done, v + done, gp + done, n - done, a, sh ? sh + done : nullptr);
      AUTOTP_LAUNCHED("adamw_kernel");
    }
  });
}

double CudaBackendImpl::sum_squares(const float* x, size_t n) {
  if (!n) return 0.0;
  // The range in pieces: the narrow outputs inside it (read in bf16) and the fp32 between them.
  // One cutting across the range's ends is made fp32 first.
  const auto lo = reinterpret_cast<uintptr_t>(x), hi = lo + n * sizeof(float);
  for (const Narrow& r : narrow_)
    if (r.begin < hi && lo < r.begin + r.n * sizeof(float) &&
        (r.begin < lo || r.begin + r.n * sizeof(float) > hi)) {
      make_fp32(const_cast<float*>(x), n);
      break;
    }
  std::vector<Narrow> inside;
  for (const Narrow& r : narrow_)
    if (r.begin >= lo && r.begin + r.n * sizeof(float) <= hi) inside.push_back(r);
  std::sort(inside.begin(), inside.end(),
            [](const Narrow& a, const Narrow& b) { return a.begin < b.begin; });
  struct Piece {
    const void* data;
    size_t n;
    bool narrow;
  };
  std::vector<Piece> pieces;
  uintptr_t at = lo;
  for (const Narrow& r : inside) {
    if (r.begin > at)
      pieces.push_back({reinterpret_cast<const float*>(at), (r.begin - at) / 4, false});
    pieces.push_back({r.data, r.n, true});
    at = r.begin + r.n * sizeof(float);
  }
  if (at < hi) pieces.push_back({reinterpret_cast<const float*>(at), (hi - at) / 4, false});
  std::vector<unsigned> blocks;
  unsigned total = 0;
  for (const Piece& p : pieces) total += blocks.emplace_back(std::min(kSumBlocks, grid_for(p.n)));
  auto* partial = static_cast<double*>(scratch(Scratch::Reduce, total * sizeof(double)));
  double out = 0.0;
  {
    Timed t(*this, "optimizer");
    unsigned off = 0;
    for (size_t k = 0; k < pieces.size(); ++k) {
      const Piece& p = pieces[k];
      if (p.narrow)
        sum_squares_kernel<<<blocks[k], kThreads, 0, stream_>>>(
            static_cast<const __nv_bfloat16*>(p.data), p.n, partial + off);
      else
        sum_squares_kernel<<<blocks[k], kThreads, 0, stream_>>>(static_cast<const float*>(p.data),
                                                                p.n, partial + off);
      AUTOTP_LAUNCHED("sum_squares_kernel");
      off += blocks[k];
    }
    sum_partials_kernel<<<1, kThreads, 0, stream_>>>(partial, total);
    AUTOTP_LAUNCHED("sum_partials_kernel");
  }
  to_host(partial, &out, sizeof(double));
  return out;
}

}  // namespace autotp::cuda
