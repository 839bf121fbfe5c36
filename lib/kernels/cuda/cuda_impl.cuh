#pragma once
// Internals of the CUDA backend shared by its .cu files: the implementation class, error
// checks, launch-size helpers, block reductions and the per-op profiling scope. Each group of
// ops lives in the .cu named for it, as on the CPU side.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/gemm_tuner.cuh"
#include "kernels/cuda/vmm.cuh"

namespace autotp::cuda {

// Every CUDA/cuBLAS call goes through these: a failure names the call and the library message.
void check_cuda(cudaError_t e, const char* call, const char* file, int line);
void check_cublas(cublasStatus_t s, const char* call, const char* file, int line);
#define AUTOTP_CUDA(call) ::autotp::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define AUTOTP_CUBLAS(call) ::autotp::cuda::check_cublas((call), #call, __FILE__, __LINE__)
// After a kernel launch: configuration errors (too much shared memory, bad grid) surface here.
#define AUTOTP_LAUNCHED(name) \
  ::autotp::cuda::check_cuda(cudaGetLastError(), "launch of " name, __FILE__, __LINE__)

constexpr int kThreads = 256;
// Whether every pointer is 16-byte aligned: the condition for float4 / cp.async paths.
template <typename... P>
bool aligned16(const P*... p) {
  return ((reinterpret_cast<uintptr_t>(p) % 16 == 0) && ...);
}
// Blocks for a grid-stride loop over n items: enough to fill an H100, never a huge grid.
inline unsigned grid_for(size_t n, int threads = kThreads) {
  size_t b = (n + size_t(threads) - 1) / size_t(threads);
  return unsigned(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

// K consecutive floats (K = 1, 4 for one 16-byte access, or 8: two fp32 accesses, one bf16) in
// and out of registers. An output of type __nv_bfloat16 is rounded to nearest even, as to_bf16
// does: a Use::Gemm output holds the same bf16 values the GEMM's conversion would have made. K = 4
// needs p 16-byte aligned (8-byte for bf16); K = 8 needs 16-byte alignment.
template <int K>
__device__ __forceinline__ void load_k(const float* p, float (&v)[K]) {
  if constexpr (K % 4 == 0) {
#pragma unroll
    for (int j = 0; j < K; j += 4) {
      const float4 t = *reinterpret_cast<const float4*>(p + j);
      v[j] = t.x, v[j + 1] = t.y, v[j + 2] = t.z, v[j + 3] = t.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < K; ++i) v[i] = p[i];
  }
}
template <int K>
__device__ __forceinline__ void load_k(const __nv_bfloat16* p, float (&v)[K]) {
  if constexpr (K == 4) {
    const uint2 t = *reinterpret_cast<const uint2*>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&t.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&t.y));
    v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
  } else if constexpr (K == 8) {
    const uint4 t = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[j]));
      v[2 * j] = a.x, v[2 * j + 1] = a.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < K; ++i) v[i] = __bfloat162float(p[i]);
  }
}
template <int K>
__device__ __forceinline__ void store_k(float* p, const float (&v)[K]) {
  if constexpr (K % 4 == 0) {
#pragma unroll
    for (int j = 0; j < K; j += 4)
      *reinterpret_cast<float4*>(p + j) = make_float4(v[j], v[j + 1], v[j + 2], v[j + 3]);
  } else {
#pragma unroll
    for (int i = 0; i < K; ++i) p[i] = v[i];
  }
}
template <int K>
__device__ __forceinline__ void store_k(__nv_bfloat16* p, const float (&v)[K]) {
  if constexpr (K == 4) {
    __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(p);
    o[0] = __floats2bfloat162_rn(v[0], v[1]);
    o[1] = __floats2bfloat162_rn(v[2], v[3]);
  } else if constexpr (K == 8) {
    uint32_t w[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const __nv_bfloat162 b = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
      w[j] = *reinterpret_cast<const uint32_t*>(&b);
    }
    *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
  } else {
#pragma unroll
    for (int i = 0; i < K; ++i) p[i] = __float2bfloat16_rn(v[i]);
  }
}

// Kernels above 48 KiB of dynamic shared memory must opt in (H100: up to 227 KiB per block).
template <typename K>
void allow_smem(K kernel, size_t bytes, const char* name) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
             name, __FILE__, __LINE__);
}

__device__ __forceinline__ float to_float(float x) {
  return x;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ void store1(float* p, float x) {
  *p = x;
}
__device__ __forceinline__ void store1(__nv_bfloat16* p, float x) {
  *p = __float2bfloat16_rn(x);
}

// Calls f(p) with p = the narrow (bf16) copy of an op's input when there is one, else the fp32
// input itself: the launch of a kernel templated on its input's type.
template <typename F>
void with_input(const __nv_bfloat16* narrow, const float* x, F f) {
  narrow ? f(narrow) : f(x);
}

// Calls f(k) with k an integral_constant<int, K>, K = 4 when `vec` else 1: the launch of a
// kernel templated on the floats per access.
template <typename F>
void dispatch_k(bool vec, F f) {
  if (vec)
    f(std::integral_constant<int, 4>{});
  else
    f(std::integral_constant<int, 1>{});
}
// The same with o, the narrow (bf16) copy of a Use::Gemm output when there is one, else the
// fp32 output: the launch of a kernel templated on <K, OutT>.
template <typename F>
void dispatch_out(bool vec, float* out, __nv_bfloat16* narrow, F f) {
  dispatch_k(vec, [&](auto k) { narrow ? f(k, narrow) : f(k, out); });
}

// Vocabulary blocks travel to the kernels by value (kernel arguments), so no upload is needed.
constexpr int kMaxVocabBlocks = 16;
struct Blocks {
  int n = 0;
  int64_t col[kMaxVocabBlocks], begin[kMaxVocabBlocks], len[kMaxVocabBlocks];
  // The local column (or table row) of token id, -1 when no block holds it.
  __device__ int64_t local(int64_t id) const {
    for (int k = 0; k < n; ++k)
      if (id >= begin[k] && id < begin[k] + len[k]) return col[k] + id - begin[k];
    return -1;
  }
};
Blocks to_blocks(const std::vector<VocabBlock>& v, const char* op);

// Sum / max over a block of kThreads threads (any blockDim multiple of 32 up to 1024); every
// thread gets the result. `red` is shared scratch of 32 T; the call begins with a barrier so
// that back-to-back reductions may share it.
template <typename T>
__device__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <typename T>
__device__ T block_sum(T v, T* red) {
  v = warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : T(0);
  return warp_sum(v);
}
__device__ inline float block_max(float v, float* red) {
  v = warp_max(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : -INFINITY;
  return warp_max(v);
}

class CudaBackendImpl final : public CudaBackend {
 public:
  CudaBackendImpl(int device, const std::string& gemm_tables);
  ~CudaBackendImpl() override;

  std::string name() const override { return "cuda"; }
  int device() const override { return device_; }
  std::string device_name() const override { return device_name_; }
  cudaStream_t stream() const override { return stream_; }
  size_t peak_bytes() const override { return peak_bytes_; }
  size_t current_bytes() const override { return current_bytes_; }
  void reset_peak_bytes() override { peak_bytes_ = current_bytes_; }
  void set_profiling(bool on) override { profiling_ = on; }
  std::map<std::string, double> op_times_ms() override;
  void reset_op_times() override;
  std::map<std::string, size_t> scratch_bytes() const override;
  void free_scratch() override;
  void synchronize() override;

  void* alloc_bytes(size_t bytes) override;
  void free_bytes(void* p) override;
  void to_host(const void* dev, void* host, size_t bytes) override;
  void from_host(const void* host, void* dev, size_t bytes) override;
  void copy(const void* src, void* dst, size_t bytes) override;
  void fill_zero(void* p, size_t bytes) override;
  void params_changed(const float* params, size_t n) override;
  float* alloc_narrow(size_t n) override;
  void values_from_host(const float* host, float* dst, size_t n) override;
  void values_to_host(const float* src, float* host, size_t n) override;
  void copy_values(const float* src, float* dst, size_t n) override;
  size_t narrow_bytes() const override { return narrow_off_ || gemm_c_fp32_ || !vmm_ ? 4 : 2; }

  AUTOTP_BACKEND_OVERRIDES
  void linear_gemm(int64_t N, int64_t O, int64_t I, const float* x, const float* W, float* y,
                   Use use) override;
  void linear_backward_gemms(int64_t N, int64_t O, int64_t I, const float* dy, const float* x,
                             const float* W, float* dW, bool dW_accumulate, float* dx, Use dx_use,
                             Use dW_use = Use::Any) override;
  void make_fp32(float* x, size_t n) override;
  void add_rmsnorm_forward(const float* x, const float* residual, float* sum, const float* w,
                           int64_t N, int64_t H, float eps, float* out, float* rstd,
                           Use use) override;

  // A device buffer reused across calls, grown (never shrunk) to `bytes`. Slots are per use
  // so that two scratch buffers of one op never alias.
  enum class Scratch {
    GemmA,
    GemmB,
    GemmC,
    AttnD,
    Attn16,
    Reduce,
    EmbedSort,
    NormPartial,
    NormGrad,
    CeGrad,
    Wide,
    WideB,
    WideC,
    Weight,
    Count
  };
  // Scratch's names, in its order (scratch_bytes() reports by name).
  static constexpr const char* kScratchNames[] = {
      "GemmA",       "GemmB",    "GemmC",  "AttnD", "Attn16", "Reduce", "EmbedSort",
      "NormPartial", "NormGrad", "CeGrad", "Wide",  "WideB",  "WideC",  "Weight"};
  static_assert(std::size(kScratchNames) == size_t(Scratch::Count));
  void* scratch(Scratch which, size_t bytes);

  // ---- Use::Gemm and Use::Narrow outputs (kernels/backend.hpp): a bf16 copy stands for the
  // fp32 buffer ----
  // Where an op writes the bf16 copy of out[0, n): null when `use` is Any (the op writes fp32);
  // else out's own memory (its first 2n bytes) when none of the op's `inputs` ((pointer, bytes)
  // ranges) overlaps out; else the scratch slot `spill` when given (an op that works in place,
  // ce_backward, or adds into out, rmsnorm_backward), else null.
  __nv_bfloat16* narrow_output(float* out, size_t n, Use use,
                               std::initializer_list<std::pair<const void*, size_t>> inputs,
                               Scratch spill = Scratch::Count);
  // The narrow copy of [x, x + n) or null; a Use::Gemm one is removed from the list when
  // `consume` (it serves one read).
  // (An in-place op on a narrow buffer, RoPE, writes through it.)
  __nv_bfloat16* narrow_of(const float* x, size_t n, bool consume);
  // x as fp32 for a kernel that reads only fp32: x itself, or its narrow copy widened into the
  // Wide scratch slot.
  const float* widened(const float* x, size_t n, Scratch slot = Scratch::Wide);
  // A weight as fp32 for a kernel that reads only fp32 (the norms): w itself, or, where the
  // parameters are narrow, its bf16 values widened into the Weight scratch slot.
  const float* weight_f32(const float* w, size_t n);
  // The bf16 values of [p, p + n) when that range lies inside a buffer from alloc_narrow, else
  // null.
  __nv_bfloat16* narrow_data(const float* p, size_t n) const;
  // Every op calls this for each buffer it writes in fp32: a narrow copy of a range it overlaps
  // is stale from then on. Fails for a buffer from alloc_narrow (it has no room for fp32).
  void wrote(const void* p, size_t bytes);

  // Records CUDA events around one op while profiling is on (RAII; see op_times_ms()).
  class Timed {
   public:
    Timed(CudaBackendImpl& be, const char* category);
    ~Timed();
    Timed(const Timed&) = delete;
    Timed& operator=(const Timed&) = delete;

   private:
    CudaBackendImpl& be_;
    const char* category_;
    cudaEvent_t start_ = nullptr;
  };

 private:
  void* device_alloc(size_t bytes);  // tracked in live_/current_bytes_/peak_bytes_
  // The narrow copies of ranges overlapping [p, p + bytes) are stale.
  void forget_narrow(const void* p, size_t bytes);
  // Whether [p, p + bytes) overlaps a buffer from alloc_narrow (by its fp32 addresses).
  bool in_narrow_alloc(const void* p, size_t bytes) const;
  void device_free(void* p);
  cudaEvent_t take_event();
  // The bf16 operand for a GEMM: the params' shadow when x lies in the params range, the narrow
  // copy an op wrote for [x, x + n) (narrow_of), else x converted into the given scratch slot.
  const __nv_bfloat16* bf16_operand(const float* x, size_t n, Scratch slot);
  // The shadow of [x, x + n) when that range lies in the parameters (whole floats), else null.
  __nv_bfloat16* shadow_of(const float* x, size_t n) const;
  // A write into the parameters by a memory op: the shadow is no longer known to be fresh (and
  // wrote(p, bytes)).
  void touched(const void* p, size_t bytes);
  void norm_forward(const float* x, const float* residual, float* sum, const float* w, int64_t N,
                    int64_t H, float eps, float* out, float* rstd, Use use);
  // matmul with the Use of C (linear_gemm's y).
  void matmul_to(int64_t M, int64_t N, int64_t K, const float* A, bool transA, const float* B,
                 bool transB, float* C, bool accumulate, Use use);
  // C[M,N] (+)= op(A) op(B) on bf16 operands (matmul's layout conventions); into C16 (bf16)
  // instead when given (then not accumulating).
  void gemm(int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, bool transA,
            const __nv_bfloat16* B, bool transB, float* C, bool accumulate,
            __nv_bfloat16* C16 = nullptr);

  int device_ = 0;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  // The GEMM algorithm of each shape (gemm_tuner.cuh): the shipped table's for this GPU, the
  // timed choice under AUTOTP_GEMM_TUNE=1, else cublasGemmEx's default.
  GemmTuner tuner_;

  std::unordered_map<void*, size_t> live_;
  // alloc_narrow's buffers by address: 4n bytes of addresses, 2n of memory (kernels/cuda/vmm.cuh).
  struct NarrowAlloc {
    VmmRange range;
    size_t n;
  };
  std::map<uintptr_t, NarrowAlloc> narrow_allocs_;
  size_t current_bytes_ = 0, peak_bytes_ = 0;
  void* scratch_[int(Scratch::Count)] = {};
  size_t scratch_bytes_[int(Scratch::Count)] = {};

  // bf16 copy of [params_, params_ + params_n_), refreshed by params_changed(); where the
  // parameters come from alloc_narrow (params_narrow_) their own memory, not allocated here.
  const float* params_ = nullptr;
  size_t params_n_ = 0;
  bool params_narrow_ = false;
  __nv_bfloat16* shadow_ = nullptr;
  size_t shadow_cap_ = 0;
  // Parameters that AdamW updated (writing their shadow too) since the last params_changed(),
  // reset by any other write into them: when it covers all of them, params_changed() has
  // nothing to convert.
  size_t shadow_fresh_ = 0;

  // AUTOTP_CUDA_GEMM_OUTPUTS=fp32 in the environment: Use::Gemm and Use::Narrow outputs are
  // written in fp32 (and converted by the GEMMs that read them), for measuring what they save.
  bool narrow_off_ = false;
  // AUTOTP_CUDA_GEMM_OUTPUTS=fp32c: the GEMMs write C in fp32 even for a narrow use (the A/B of
  // cuBLAS's bf16 C); every other op's narrow outputs stay.
  bool gemm_c_fp32_ = false;
  // The driver can reserve addresses apart from memory (alloc_narrow keeps 2 bytes per element);
  // without it alloc_narrow is alloc, which narrow outputs fit as well.
  bool vmm_ = false;
  // Live Use::Gemm and Use::Narrow outputs: fp32 range [begin, begin + 4 n) stands as the bf16
  // values at data; a Gemm one serves one read, a Narrow one (keep) every read until a write.
  struct Narrow {
    uintptr_t begin;
    size_t n;
    __nv_bfloat16* data;
    bool keep;
  };
  std::vector<Narrow> narrow_;
  template <typename Pred>
  void drop_narrow(Pred pred) {
    narrow_.erase(std::remove_if(narrow_.begin(), narrow_.end(), pred), narrow_.end());
  }

  bool profiling_ = false;
  struct Pending {
    const char* category;
    cudaEvent_t start, stop;
  };
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> free_events_;
  std::map<std::string, double> times_ms_;
};

// Elementwise fp32 -> bf16 (round to nearest even) of n values, on `stream`.
void to_bf16(const float* x, __nv_bfloat16* y, size_t n, cudaStream_t stream);

}  // namespace autotp::cuda
