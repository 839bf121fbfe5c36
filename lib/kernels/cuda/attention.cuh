#pragma once
// What the two attention implementations share: the head layout of qkv / out / statistics
// and the entry points of the tensor-core kernels
// (attention_tc_forward.cu, attention_tc_backward.cu) that attention.cu dispatches to.
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

// Where the rows of one (batch, head) start: qkv (and dqkv) rows are [q heads | k heads |
// v heads], out (and dout) rows [q heads]; the saved statistics are [B, nq, T].
struct Heads {
  int64_t T;
  int nq, nkv, hd;
  __host__ __device__ int64_t ld() const { return int64_t(nq + 2 * nkv) * hd; }
  __host__ __device__ int64_t ldo() const { return int64_t(nq) * hd; }
  __device__ int kv_of(int h) const { return h / (nq / nkv); }  // repeat_kv
  __device__ int64_t q(int b, int h) const { return int64_t(b) * T * ld() + int64_t(h) * hd; }
  __device__ int64_t k(int b, int kvh) const { return q(b, nq + kvh); }
  __device__ int64_t v(int b, int kvh) const { return q(b, nq + nkv + kvh); }
  __device__ int64_t o(int b, int h) const { return int64_t(b) * T * ldo() + int64_t(h) * hd; }
  __device__ int64_t stat(int b, int h) const { return (int64_t(b) * nq + h) * T; }
};

// Head dims compiled into kernels as template arguments: with_head_dim calls
// f(std::integral_constant<int, D>{}) for the D of the list equal to hd, false when none is.
template <int... D>
struct HeadDims {};
template <int... D, typename F>
bool with_head_dim(HeadDims<D...>, int64_t hd, F&& f) {
  return ((hd == D && (f(std::integral_constant<int, D>{}), true)) || ...);
}

// True when the bf16 tensor-core kernels take this call: head dim 16, 32, 64 or 128, every
// buffer 16-byte aligned, and AUTOTP_ATTN_FP32 unset (that variable selects the fp32 kernels,
// e.g. to compare the two).
bool tc_attention_applies(int64_t hd, const void* a, const void* b, const void* c = nullptr,
                          const void* d = nullptr);
// Bytes of bf16 scratch the tensor-core kernels take (inputs rounded to bf16).
size_t tc_attention_scratch_bytes(const Heads& g, int64_t B, bool backward);
// qkv is read from qkv16 (bf16) when given, else converted into scratch; out is written in
// bf16 at out16 instead when that is given (a narrow output).
void tc_attention_forward(const float* qkv, const __nv_bfloat16* qkv16, const Heads& g, int64_t B,
                          cudaStream_t stream, void* scratch, float* out, __nv_bfloat16* out16,
                          float* lse);
// Also computes D[b, h, i] = sum_d dO O (the fp32 path's attn_delta_kernel) into D; dqkv is
// overwritten (in bf16 at dqkv16 instead when that is given). dout, qkv and out are read from
// dout16, qkv16 and out16 (bf16) when given.
void tc_attention_backward(const float* dout, const __nv_bfloat16* dout16, const float* qkv,
                           const __nv_bfloat16* qkv16, const float* out, const __nv_bfloat16* out16,
                           const float* lse, float* D, const Heads& g, int64_t B,
                           cudaStream_t stream, void* scratch, float* dqkv, __nv_bfloat16* dqkv16);

}  // namespace autotp::cuda
