// GEMMs on bf16 operands with fp32 accumulation and an fp32 C, or a bf16 C for a Use::Gemm or
// Use::Narrow output (cublasGemmEx, compute 32F: cuBLAS runs them on the tensor cores). Weights
// come from the bf16 shadow of the parameters; operands an op wrote with Use::Gemm or
// Use::Narrow come as the bf16 copy it wrote; other operands (activations, gradients) are
// converted into scratch first.
#include <algorithm>
#include <climits>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
__global__ void to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y,
                               size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}
__global__ void to_f32_kernel(const __nv_bfloat16* __restrict__ x, float* __restrict__ y,
                              size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    y[i] = __bfloat162float(x[i]);
}
}  // namespace

void to_bf16(const float* x, __nv_bfloat16* y, size_t n, cudaStream_t stream) {
  if (!n) return;
  to_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  AUTOTP_LAUNCHED("to_bf16_kernel");
}

void CudaBackendImpl::params_changed(const float* params, size_t n) {
  if (__nv_bfloat16* own = narrow_data(params, n)) {
    // Narrow parameters are their own bf16 copy: nothing to convert, no second buffer.
    if (!params_narrow_) device_free(shadow_);
    params_ = params;
    params_n_ = n;
    params_narrow_ = true;
    shadow_ = own;
    shadow_cap_ = 0;
    shadow_fresh_ = 0;
    return;
  }
  if (params_narrow_) shadow_ = nullptr;
  params_narrow_ = false;
  const bool fresh = params == params_ && n == params_n_ && shadow_fresh_ == n && n;
  if (shadow_cap_ < n) {
    device_free(shadow_);
    shadow_ = nullptr;
    shadow_cap_ = 0;
    shadow_ = static_cast<__nv_bfloat16*>(device_alloc(n * sizeof(__nv_bfloat16)));
    shadow_cap_ = n;
  }
  params_ = params;
  params_n_ = n;
  shadow_fresh_ = 0;
  if (!fresh) to_bf16(params, shadow_, n, stream_);
}

__nv_bfloat16* CudaBackendImpl::shadow_of(const float* x, size_t n) const {
  // Pointer comparison across unrelated buffers is done on integers (well defined).
  const auto xi = reinterpret_cast<uintptr_t>(x), pi = reinterpret_cast<uintptr_t>(params_);
  if (params_ && xi >= pi && xi + n * sizeof(float) <= pi + params_n_ * sizeof(float) &&
      (xi - pi) % sizeof(float) == 0)
    return shadow_ + (xi - pi) / sizeof(float);
  return nullptr;
}

void CudaBackendImpl::touched(const void* p, size_t bytes) {
  const auto b = reinterpret_cast<uintptr_t>(p), pi = reinterpret_cast<uintptr_t>(params_);
  if (params_ && b < pi + params_n_ * sizeof(float) && b + bytes > pi) shadow_fresh_ = 0;
  wrote(p, bytes);
}

namespace {
bool overlap(uintptr_t a, size_t abytes, uintptr_t b, size_t bbytes) {
  return a < b + bbytes && b < a + abytes;
}
}  // namespace

void CudaBackendImpl::wrote(const void* p, size_t bytes) {
  check(!in_narrow_alloc(p, bytes), "cuda backend: an op would write fp32 into a buffer from ",
        "alloc_narrow, which holds bf16 only (its writers must be given Use::Narrow or Use::Gemm)");
  forget_narrow(p, bytes);
}

void CudaBackendImpl::forget_narrow(const void* p, size_t bytes) {
  if (narrow_.empty() || !bytes) return;
  const auto b = reinterpret_cast<uintptr_t>(p);
  drop_narrow([&](const Narrow& r) { return overlap(r.begin, r.n * sizeof(float), b, bytes); });
}

__nv_bfloat16* CudaBackendImpl::narrow_output(
    float* out, size_t n, Use use, std::initializer_list<std::pair<const void*, size_t>> inputs,
    Scratch spill) {
  forget_narrow(out, n * sizeof(float));
  const auto o = reinterpret_cast<uintptr_t>(out);
  bool in_place = true;
  for (auto [p, bytes] : inputs)
    in_place &= !(p && overlap(o, n * sizeof(float), reinterpret_cast<uintptr_t>(p), bytes));
  // A buffer from alloc_narrow has room for its bf16 values only.
  if (use == Use::Any || !in_place || narrow_off_) wrote(out, n * sizeof(float));
  if (use == Use::Any || !n || narrow_off_) return nullptr;
  if (!in_place && spill == Scratch::Count) return nullptr;
  auto* data = in_place ? reinterpret_cast<__nv_bfloat16*>(out)
                        : static_cast<__nv_bfloat16*>(scratch(spill, n * sizeof(__nv_bfloat16)));
  // A slot's previous narrow copy, if any, is gone with its contents; a slot's copy serves one
  // read, as the slot is the next call's.
  if (!in_place) drop_narrow([&](const Narrow& r) { return r.data == data; });
  narrow_.push_back({o, n, data, in_place && use == Use::Narrow});
  return data;
}

__nv_bfloat16* CudaBackendImpl::narrow_of(const float* x, size_t n, bool consume) {
  const auto b = reinterpret_cast<uintptr_t>(x);
  for (size_t k = 0; k < narrow_.size(); ++k) {
    const Narrow r = narrow_[k];
    if (b >= r.begin && b + n * sizeof(float) <= r.begin + r.n * sizeof(float) &&
        (b - r.begin) % sizeof(float) == 0) {
      if (consume && !r.keep) narrow_.erase(narrow_.begin() + std::ptrdiff_t(k));
      return r.data + (b - r.begin) / sizeof(float);
    }
  }
  return nullptr;
}

void CudaBackendImpl::make_fp32(float* x, size_t n) {
  if (narrow_.empty() || !n) return;
  const auto b = reinterpret_cast<uintptr_t>(x);
  // Whole narrow outputs: the fp32 of a part would overwrite bf16 of elements outside it.
  std::vector<Narrow> hit;
  for (const Narrow& r : narrow_)
    if (overlap(r.begin, r.n * sizeof(float), b, n * sizeof(float))) hit.push_back(r);
  for (const Narrow& r : hit) {
    float* out = reinterpret_cast<float*>(r.begin);
    check(!in_narrow_alloc(out, r.n * sizeof(float)), "cuda make_fp32: the buffer is from ",
          "alloc_narrow and has no room for fp32 values");
    drop_narrow([&](const Narrow& q) { return q.begin == r.begin && q.data == r.data; });
    // In place the bf16 values occupy the first half of the fp32 range: through scratch.
    const bool in_place = reinterpret_cast<uintptr_t>(r.data) == r.begin;
    float* to = in_place ? static_cast<float*>(scratch(Scratch::Wide, r.n * sizeof(float))) : out;
    to_f32_kernel<<<grid_for(r.n), kThreads, 0, stream_>>>(r.data, to, r.n);
    AUTOTP_LAUNCHED("to_f32_kernel");
    if (in_place) copy(to, out, r.n * sizeof(float));
  }
}

const float* CudaBackendImpl::widened(const float* x, size_t n, Scratch slot) {
  const __nv_bfloat16* x16 = narrow_of(x, n, false);
  if (!x16) return x;
  auto* y = static_cast<float*>(scratch(slot, n * sizeof(float)));
  to_f32_kernel<<<grid_for(n), kThreads, 0, stream_>>>(x16, y, n);
  AUTOTP_LAUNCHED("to_f32_kernel");
  return y;
}

const float* CudaBackendImpl::weight_f32(const float* w, size_t n) {
  const __nv_bfloat16* w16 = params_narrow_ ? shadow_of(w, n) : nullptr;
  if (!w16) return w;
  auto* y = static_cast<float*>(scratch(Scratch::Weight, n * sizeof(float)));
  to_f32_kernel<<<grid_for(n), kThreads, 0, stream_>>>(w16, y, n);
  AUTOTP_LAUNCHED("to_f32_kernel");
  return y;
}

__nv_bfloat16* CudaBackendImpl::narrow_data(const float* p, size_t n) const {
  if (narrow_allocs_.empty() || !p) return nullptr;
  const auto b = reinterpret_cast<uintptr_t>(p);
  auto it = narrow_allocs_.upper_bound(b);
  if (it == narrow_allocs_.begin()) return nullptr;
  --it;
  if (b + n * sizeof(float) > it->first + it->second.n * sizeof(float)) return nullptr;
  return reinterpret_cast<__nv_bfloat16*>(it->first) + (b - it->first) / sizeof(float);
}

namespace {
// Host <-> narrow transfers go through fp32 scratch of at most this many values (64 MiB).
constexpr size_t kValuesChunk = size_t(1) << 24;
}  // namespace

void CudaBackendImpl::values_from_host(const float* host, float* dst, size_t n) {
  __nv_bfloat16* d16 = narrow_data(dst, n);
  if (!d16) return from_host(host, dst, n * sizeof(float));
  for (size_t at = 0; at < n; at += kValuesChunk) {
    const size_t k = std::min(kValuesChunk, n - at);
    auto* tmp = static_cast<float*>(scratch(Scratch::Wide, k * sizeof(float)));
    from_host(host + at, tmp, k * sizeof(float));
    to_bf16(tmp, d16 + at, k, stream_);
  }
  AUTOTP_CUDA(cudaStreamSynchronize(stream_));
}

void CudaBackendImpl::values_to_host(const float* src, float* host, size_t n) {
  const __nv_bfloat16* s16 = narrow_data(src, n);
  if (!s16) return to_host(src, host, n * sizeof(float));
  for (size_t at = 0; at < n; at += kValuesChunk) {
    const size_t k = std::min(kValuesChunk, n - at);
    auto* tmp = static_cast<float*>(scratch(Scratch::Wide, k * sizeof(float)));
    to_f32_kernel<<<grid_for(k), kThreads, 0, stream_>>>(s16 + at, tmp, k);
    AUTOTP_LAUNCHED("to_f32_kernel");
    to_host(tmp, host + at, k * sizeof(float));
  }
}

void CudaBackendImpl::copy_values(const float* src, float* dst, size_t n) {
  if (!n || src == dst) return;
  const __nv_bfloat16* s16 = narrow_data(src, n);
  __nv_bfloat16* d16 = narrow_data(dst, n);
  if (!s16 && !d16) return copy(src, dst, n * sizeof(float));
  if (s16 && d16) {
    AUTOTP_CUDA(
        cudaMemcpyAsync(d16, s16, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToDevice, stream_));
  } else if (d16) {
    to_bf16(src, d16, n, stream_);
  } else {
    wrote(dst, n * sizeof(float));
    to_f32_kernel<<<grid_for(n), kThreads, 0, stream_>>>(s16, dst, n);
    AUTOTP_LAUNCHED("to_f32_kernel");
  }
}

const __nv_bfloat16* CudaBackendImpl::bf16_operand(const float* x, size_t n, Scratch slot) {
  if (const __nv_bfloat16* s = shadow_of(x, n)) return s;
  if (const __nv_bfloat16* s = narrow_of(x, n, true)) return s;
  auto* y = static_cast<__nv_bfloat16*>(scratch(slot, n * sizeof(__nv_bfloat16)));
  to_bf16(x, y, n, stream_);
  return y;
}

void CudaBackendImpl::matmul_to(int64_t M, int64_t N, int64_t K, const float* A, bool transA,
                                const float* B, bool transB, float* C, bool accumulate, Use use) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: C = 0 (or unchanged when accumulating)
    if (!accumulate) fill_zero(C, size_t(M * N) * sizeof(float));
    return;
  }
  Timed t(*this, "gemm");
  const __nv_bfloat16* a = bf16_operand(A, size_t(M * K), Scratch::GemmA);
  const __nv_bfloat16* b = bf16_operand(B, size_t(K * N), Scratch::GemmB);
  // A bf16 C is an overwrite; accumulating needs the fp32 C.
  const Use c_use = accumulate || gemm_c_fp32_ ? Use::Any : use;
  __nv_bfloat16* c16 =
      narrow_output(C, size_t(M * N), c_use,
                    {{A, size_t(M * K) * sizeof(float)}, {B, size_t(K * N) * sizeof(float)}});
  gemm(M, N, K, a, transA, b, transB, C, accumulate, c16);
}

void CudaBackendImpl::matmul(int64_t M, int64_t N, int64_t K, const float* A, bool transA,
                             const float* B, bool transB, float* C, bool accumulate) {
  matmul_to(M, N, K, A, transA, B, transB, C, accumulate, Use::Any);
}

void CudaBackendImpl::linear_gemm(int64_t N, int64_t O, int64_t I, const float* x, const float* W,
                                  float* y, Use use) {
  matmul_to(N, O, I, x, false, W, true, y, false, use);
}

void CudaBackendImpl::linear_backward_gemms(int64_t N, int64_t O, int64_t I, const float* dy,
                                            const float* x, const float* W, float* dW,
                                            bool dW_accumulate, float* dx, Use dx_use, Use dW_use) {
  if (N == 0 || O == 0 || I == 0)
    return Backend::linear_backward_gemms(N, O, I, dy, x, W, dW, dW_accumulate, dx, dx_use);
  // An accumulated gradient is added to in fp32.
  if (dW_accumulate) make_fp32(dW, size_t(O * I));
  Timed t(*this, "gemm");
  const __nv_bfloat16* d = bf16_operand(dy, size_t(N * O), Scratch::GemmA);
  const __nv_bfloat16* xb = bf16_operand(x, size_t(N * I), Scratch::GemmB);
  const __nv_bfloat16* wb = bf16_operand(W, size_t(O * I), Scratch::GemmC);
  __nv_bfloat16* dW16 =
      narrow_output(dW, size_t(O * I), dW_accumulate || gemm_c_fp32_ ? Use::Any : dW_use,
                    {{dy, size_t(N * O) * sizeof(float)},
                     {x, size_t(N * I) * sizeof(float)},
                     {W, size_t(O * I) * sizeof(float)}});
  __nv_bfloat16* dx16 = narrow_output(dx, size_t(N * I), gemm_c_fp32_ ? Use::Any : dx_use,
                                      {{dy, size_t(N * O) * sizeof(float)},
                                       {x, size_t(N * I) * sizeof(float)},
                                       {W, size_t(O * I) * sizeof(float)},
                                       {dW, size_t(O * I) * sizeof(float)}});
  gemm(O, I, N, d, true, xb, false, dW, dW_accumulate, dW16);
  gemm(N, I, O, d, false, wb, false, dx, false, dx16);
}

void CudaBackendImpl::gemm(int64_t M, int64_t N, int64_t K, const __nv_bfloat16* a, bool transA,
                           const __nv_bfloat16* b, bool transB, float* C, bool accumulate,
                           __nv_bfloat16* C16) {
  check(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX, "cuda matmul: dimensions ", M, " x ", N,
        " x ", K, " exceed cuBLAS's 32-bit sizes");
  check(!(C16 && accumulate), "cuda matmul: a bf16 output cannot be accumulated into");
  // The shape's algorithm from the GEMM table or the tuner, else cublasGemmEx's default.
  tuner_.run(cublas_, stream_, M, N, K, a, transA, b, transB,
             C16 ? static_cast<void*>(C16) : static_cast<void*>(C), C16 ? CUDA_R_16BF : CUDA_R_32F,
             accumulate);
}

}  // namespace autotp::cuda
