#pragma once
// The compute backend: one interface, one implementation per device (ggml's idea). The model
// only ever calls these ops on buffers the backend allocated; it never dereferences them.
//
// Conventions
// - Buffers are device memory; on the CPU backend that is plain host memory. Parameters,
//   gradients and activations are fp32 buffers (float*), except those from alloc_narrow. A backend
//   may compute with narrower operands, accumulating in fp32: a CUDA backend can keep bf16 copies
//   of the weights (refreshed in params_changed()) and of activations. The CPU backend is fp32
//   throughout.
// - Token ids and targets are int32 device buffers (alloc_bytes + from_host).
// - Row-major everywhere. N = number of tokens (B*T rows), rows of an activation are tokens.
// - "accumulate" and the backward ops' parameter gradients add into their outputs (+=), so
//   that gradient accumulation and tied weights need no extra buffers.
// - Ops whose output often feeds a GEMM and nothing else take a `Use` (below), so that a
//   backend computing GEMMs on narrower operands can write that operand directly instead of
//   writing fp32 and converting it again before the GEMM.
// - The Comm (dist/comm.hpp) is called by the model on these same buffers: a backend is paired
//   with a Comm that can address its memory (host MPI for the CPU backend).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace autotp {

// Columns [col, col + len) of a local row (an embedding table's rows, or a logits row) hold
// vocabulary ids [begin, begin + len). A vocab-parallel shard is one block per sub-parameter;
// a replicated one is the single block {0, 0, V}.
struct VocabBlock {
  int64_t col = 0, begin = 0, len = 0;
};

// The per-step constants of one AdamW update (optim/adamw.hpp computes them and states the
// math, in torch.optim.AdamW's operation order).
struct AdamWStep {
  float decay_factor = 1.0f;  // 1 - lr * wd
  float one_minus_beta1 = 0.1f, beta2 = 0.999f, one_minus_beta2 = 0.001f;
  float bc2_sqrt = 1.0f, eps = 1e-8f;
  float neg_step_size = 0.0f;  // -lr / bc1
};

// Who reads an op's output.
//   Any:  anything, any number of times: the output is fp32 as each op says.
//   Gemm: only the next matmul, linear_gemm or linear_backward_gemms that takes it as an
//         operand (A, B, x, W or dy), once, and nothing writes the buffer in between. A backend
//         whose GEMMs read bf16 (CUDA) then writes only the bf16 copy that GEMM reads, leaving the
//         fp32 contents unspecified: 2 bytes written per element instead of 4 written, 4 read and 2
//         written again by the conversion. The CPU backend writes fp32 either way. Any later write
//         into the buffer, by any op, makes it an ordinary fp32 buffer again.
//   Narrow: only ops that read narrow inputs, any number of times, until the buffer is written
//         again: GEMM operands (as for Gemm) and the inputs that an op's comment marks
//         "(narrow)". A CUDA backend then keeps only the bf16 copy, as PyTorch's autocast keeps
//         these activations; the CPU backend writes fp32 either way.
enum class Use { Any, Gemm, Narrow };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory (bytes) ----
  virtual void* alloc_bytes(size_t bytes) = 0;  // zero-filled
  virtual void free_bytes(void* p) = 0;
  virtual void to_host(const void* dev, void* host, size_t bytes) = 0;
  virtual void from_host(const void* host, void* dev, size_t bytes) = 0;
  virtual void copy(const void* src, void* dst, size_t bytes) = 0;  // device to device
  virtual void fill_zero(void* p, size_t bytes) = 0;
  // Called whenever the model's parameters changed (load, init, optimizer step), so that a
  // backend holding reduced-precision copies of the weights can refresh them. params may come
  // from alloc_narrow (then they are the narrow weights themselves: every op reading them
  // reads narrow values, the embedding table and the norm weights included).
  virtual void params_changed(const float* params, size_t n) { (void)params, (void)n; }

  float* alloc(size_t n) { return static_cast<float*>(alloc_bytes(n * sizeof(float))); }
  // A buffer of n elements that only ever holds narrow values: every op that writes it is given
  // Use::Narrow or Use::Gemm for it, and only ops reading narrow inputs read it. A backend whose
  // narrow values are bf16 (CUDA) keeps 2 bytes per element where alloc() keeps 4; the pointer
  // still addresses n floats (offsets and sizes as for any buffer). Elsewhere this is alloc(n).
  // An op asked to write fp32 into it fails. Zero-filled; freed with free_bytes.
  virtual float* alloc_narrow(size_t n) { return alloc(n); }
  // The bytes per element alloc_narrow keeps (for sizing buffers against a memory budget).
  virtual size_t narrow_bytes() const { return sizeof(float); }
  // The values of n elements into, out of, or between buffers that may come from alloc_narrow:
  // rounded to the narrow type on the way in, widened on the way out (the bf16 working weights
  // of a ZeRO run whose fp32 master lives in the optimizer's shard). Elsewhere these are
  // from_host, to_host and copy.
  virtual void values_from_host(const float* host, float* dst, size_t n) {
    from_host(host, dst, n * sizeof(float));
  }
  virtual void values_to_host(const float* src, float* host, size_t n) {
    to_host(src, host, n * sizeof(float));
  }
  virtual void copy_values(const float* src, float* dst, size_t n) {
    copy(src, dst, n * sizeof(float));
  }
  // Device memory this backend holds now and its high-water mark, in bytes as the device
  // counts them (rounded as the allocator rounds, narrow buffers at their narrow size, internal
  // buffers such as a weight copy or a GEMM scratch included). train/memory_plan.hpp predicts
  // these numbers; its test holds the CPU backend's to them.
  virtual size_t current_bytes() const = 0;
  virtual size_t peak_bytes() const = 0;
  // peak_bytes() = current_bytes() from now on (to measure one phase, e.g. training steps
  // after a warm-up measurement freed its buffers).
  virtual void reset_peak_bytes() = 0;

  // ---- dense linear algebra ----
  // C[M,N] (+)= op(A) @ op(B), op(A) [M,K], op(B) [K,N]; op(X) = X^T when transX. All dense,
  // row-major: A is [M,K] (or [K,M] when transA), B is [K,N] (or [N,K] when transB).
  virtual void matmul(int64_t M, int64_t N, int64_t K, const float* A, bool transA, const float* B,
                      bool transB, float* C, bool accumulate) = 0;
  // A linear layer's GEMM, y[N, O] = x[N, I] W[O, I]^T (overwritten), with the Use of y.
  virtual void linear_gemm(int64_t N, int64_t O, int64_t I, const float* x, const float* W,
                           float* y, Use use) {
    (void)use;
    matmul(N, O, I, x, false, W, true, y, false);
  }
  // The two GEMMs of its backward, in one call so that a backend that converts operands
  // converts dy once:
  //   dW[O, I] (+)= dy^T x      dx[N, I] = dy W   (overwritten; dx_use is its Use)
  // dW is added into when dW_accumulate, else overwritten (a step's first gradient: no pass to
  // zero the buffer beforehand, and no read of it). dW_use is an overwritten dW's Use: Narrow
  // where the optimizer reads it (adamw's g and sum_squares' x are narrow inputs), which holds
  // autocast's bf16 weight gradient; an accumulated dW is fp32 (a narrow one is widened first).
  virtual void linear_backward_gemms(int64_t N, int64_t O, int64_t I, const float* dy,
                                     const float* x, const float* W, float* dW, bool dW_accumulate,
                                     float* dx, Use dx_use, Use dW_use = Use::Any) {
    (void)dx_use, (void)dW_use;
    matmul(O, I, N, dy, true, x, false, dW, dW_accumulate);
    matmul(N, I, O, dy, false, W, false, dx, false);
  }

  // The narrow values of [x, x + n) (Use::Narrow outputs) become fp32 in place, each narrow
  // output overlapping the range whole: for readers of fp32 only (the host, a collective).
  virtual void make_fp32(float* x, size_t n) { (void)x, (void)n; }

  // ---- elementwise and copies ----
  virtual void add(const float* x, float* y, size_t n) = 0;  // y += x
  virtual void scale(float* x, size_t n, float alpha) = 0;   // x *= alpha
  // dst[r, dst_col + j] (+)= src[r, src_col + j] for r < rows, j < cols; row strides src_ld,
  // dst_ld. The building block of the TP layout conversions (slice, gather-and-reorder).
  virtual void copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst,
                         int64_t dst_ld, int64_t dst_col, int64_t rows, int64_t cols,
                         bool accumulate) = 0;

  // ---- embedding (table [rows, dim], ids [n], out [n, dim]) ----
  // out[i] += table[b.col + id - b.begin] for the block b holding id; ids no block holds add 0.
  virtual void embedding_forward(const int32_t* ids, int64_t n, const float* table, int64_t dim,
                                 const std::vector<VocabBlock>& blocks, float* out) = 0;
  // dtable[b.col + id - b.begin] += dout[i], except for id == padding_idx (-1 = none).
  virtual void embedding_backward(const int32_t* ids, int64_t n, const float* dout, int64_t dim,
                                  const std::vector<VocabBlock>& blocks, int64_t padding_idx,
                                  float* dtable) = 0;

  // ---- RMSNorm (x, out [N,H]; w [H]; rstd [N]) ----
  // out = (x * rstd) * w with rstd = 1/sqrt(mean(x^2) + eps); saves rstd.
  virtual void rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t H, float eps,
                               float* out, float* rstd, Use use) = 0;
  // dx += d(out)/dx^T dout, dw += sum over rows of dout * x * rstd.
  // dout (narrow). dx is the residual stream's gradient: it stays fp32 (more is added to it
  // later), and dx_use = Gemm says that the next GEMM reads it too, so a backend may hand that
  // GEMM a bf16 copy written in the same pass.
  virtual void rmsnorm_backward(const float* dout, const float* x, const float* w,
                                const float* rstd, int64_t N, int64_t H, float* dx, float* dw,
                                Use dx_use) = 0;
  // The residual add fused with the norm that follows it: sum = residual + x (sum may be
  // residual itself), then out = rmsnorm_forward(sum). One pass over memory on a GPU, and no
  // copy of the residual stream when sum is a new buffer; these calls elsewhere. x (narrow):
  // the branch's output, bf16 under autocast, added to the fp32 residual.
  virtual void add_rmsnorm_forward(const float* x, const float* residual, float* sum,
                                   const float* w, int64_t N, int64_t H, float eps, float* out,
                                   float* rstd, Use use) {
    if (sum != residual) copy(residual, sum, size_t(N * H) * sizeof(float));
    add(x, sum, size_t(N * H));
    rmsnorm_forward(sum, w, N, H, eps, out, rstd, use);
  }

  // ---- rotary embedding, in place on n_heads consecutive heads of each row ----
  // x: N rows of stride ld; token row i has position i % T; heads start at x, head_dim apart.
  // cos, sin: [T, rotary_dim/2] (already scaled by LongRoPE's attention factor).
  // forward rotates (x_j, x_{j+rd/2}) by the angle; backward applies the transpose.
  // x (narrow: a narrow x stays narrow).
  virtual void rope_forward(float* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
                            int64_t head_dim, int64_t rotary_dim, const float* cos,
                            const float* sin) = 0;
  virtual void rope_backward(float* dx, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
                             int64_t head_dim, int64_t rotary_dim, const float* cos,
                             const float* sin) = 0;

  // ---- causal self-attention with GQA, on the heads present (local heads under TP) ----
  // qkv [B*T, (nq + 2*nkv) * hd], per row [q heads | k heads | v heads] (after RoPE);
  // out [B*T, nq*hd]; lse [B, nq, T] = log-sum-exp of each scaled score row (saved for the
  // backward). Query head h reads kv head h / (nq / nkv); scale 1/sqrt(hd); softmax in fp32.
  // qkv (narrow); `use` is out's: read by o_proj's GEMMs and attention_backward.
  virtual void attention_forward(const float* qkv, int64_t B, int64_t T, int64_t nq, int64_t nkv,
                                 int64_t hd, float* out, float* lse, Use use) = 0;
  // dqkv (same layout as qkv) is overwritten; `use` is its Use (RoPE's backward in place,
  // then qkv_proj's GEMMs). dout (narrow), qkv (narrow), out (narrow).
  virtual void attention_backward(const float* dout, const float* qkv, const float* out,
                                  const float* lse, int64_t B, int64_t T, int64_t nq, int64_t nkv,
                                  int64_t hd, float* dqkv, Use use) = 0;

  // ---- SwiGLU: gu [N, 2I] per row [gate | up]; out [N, I] = up * silu(gate) ----
  // gu (narrow), and the backward's dout (narrow).
  virtual void swiglu_forward(const float* gu, int64_t N, int64_t I, float* out, Use use) = 0;
  virtual void swiglu_backward(const float* dout, const float* gu, int64_t N, int64_t I, float* dgu,
                               Use use) = 0;  // dgu overwritten

  // ---- cross-entropy over (possibly vocab-parallel) logits [N, V] (V = local columns) ----
  // Stage 1, one pass over each row: m[n] = max_v logits[n, v], s[n] = sum_v exp(logits[n, v]
  // - m[n]) over this rank's columns; z[n] = logits[n, col of target] when a block holds
  // targets[n], else 0. Loss of row n = log(s) + m - z (after stage 2 under vocab parallelism),
  // ignored where targets[n] == ignore_index.
  // logits (narrow).
  virtual void ce_stats(const float* logits, int64_t N, int64_t V, const int32_t* targets,
                        const std::vector<VocabBlock>& blocks, float* m, float* s, float* z) = 0;
  // Stage 2, vocab-parallel only, once the model has all-reduced the max of m over TP into mg:
  // s[n] *= exp(m[n] - mg[n]), so that the TP sum of s is sum over all columns of exp(l - mg).
  // (The model then all-reduces s and z.)
  virtual void ce_rescale(const float* m, const float* mg, int64_t N, float* s) = 0;
  // Stage 3, in place: logits <- scale * (softmax - onehot(target)), rows with an ignored
  // target <- 0. softmax = exp(logits - m) / s with the global m and s. Use::Gemm: the lm_head
  // backward's GEMMs are its only readers (logits (narrow) require it).
  virtual void ce_backward(float* logits, int64_t N, int64_t V, const float* m, const float* s,
                           const int32_t* targets, const std::vector<VocabBlock>& blocks,
                           int32_t ignore_index, float scale, Use use) = 0;

  // ---- optimizer (fp32 on every backend) ----
  // One AdamW update of n elements (optim/adamw.hpp has the math): p, m, v updated in place;
  // g (narrow) is read as g * grad_scale; decay = false skips the weight-decay factor.
  virtual void adamw(float* p, float* m, float* v, const float* g, size_t n, const AdamWStep& s,
                     bool decay, float grad_scale) = 0;
  // sum of x[i]^2, accumulated in double; returned to the host (synchronizes). x (narrow): the
  // narrow outputs inside the range are read as such.
  virtual double sum_squares(const float* x, size_t n) = 0;
  // Waits until every op issued so far has finished (for timing; a no-op on the CPU).
  virtual void synchronize() {}
};

// The compute ops every backend overrides, declared once for all of them: a backend's class
// body says AUTOTP_BACKEND_OVERRIDES (the semantics are on the pure virtuals above).
#define AUTOTP_BACKEND_OVERRIDES                                                                   \
  void matmul(int64_t M, int64_t N, int64_t K, const float* A, bool transA, const float* B,        \
              bool transB, float* C, bool accumulate) override;                                    \
  void add(const float* x, float* y, size_t n) override;                                           \
  void scale(float* x, size_t n, float alpha) override;                                            \
  void copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst, int64_t dst_ld,    \
                 int64_t dst_col, int64_t rows, int64_t cols, bool accumulate) override;           \
  void embedding_forward(const int32_t* ids, int64_t n, const float* table, int64_t dim,           \
                         const std::vector<VocabBlock>& blocks, float* out) override;              \
  void embedding_backward(const int32_t* ids, int64_t n, const float* dout, int64_t dim,           \
                          const std::vector<VocabBlock>& blocks, int64_t padding_idx,              \
                          float* dtable) override;                                                 \
  void rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t H, float eps,            \
                       float* out, float* rstd, Use use) override;                                 \
  void rmsnorm_backward(const float* dout, const float* x, const float* w, const float* rstd,      \
                        int64_t N, int64_t H, float* dx, float* dw, Use dx_use) override;          \
  void rope_forward(float* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads, int64_t head_dim, \
                    int64_t rotary_dim, const float* cos, const float* sin) override;              \
  void rope_backward(float* dx, int64_t N, int64_t T, int64_t ld, int64_t n_heads,                 \
                     int64_t head_dim, int64_t rotary_dim, const float* cos, const float* sin)     \
      override;                                                                                    \
  void attention_forward(const float* qkv, int64_t B, int64_t T, int64_t nq, int64_t nkv,          \
                         int64_t hd, float* out, float* lse, Use use) override;                    \
  void attention_backward(const float* dout, const float* qkv, const float* out, const float* lse, \
                          int64_t B, int64_t T, int64_t nq, int64_t nkv, int64_t hd, float* dqkv,  \
                          Use use) override;                                                       \
  void swiglu_forward(const float* gu, int64_t N, int64_t I, float* out, Use use) override;        \
  void swiglu_backward(const float* dout, const float* gu, int64_t N, int64_t I, float* dgu,       \
                       Use use) override;                                                          \
  void ce_stats(const float* logits, int64_t N, int64_t V, const int32_t* targets,                 \
                const std::vector<VocabBlock>& blocks, float* m, float* s, float* z) override;     \
  void ce_rescale(const float* m, const float* mg, int64_t N, float* s) override;                  \
  void ce_backward(float* logits, int64_t N, int64_t V, const float* m, const float* s,            \
                   const int32_t* targets, const std::vector<VocabBlock>& blocks,                  \
                   int32_t ignore_index, float scale, Use use) override;                           \
  void adamw(float* p, float* m, float* v, const float* g, size_t n, const AdamWStep& s,           \
             bool decay, float grad_scale) override;                                               \
  double sum_squares(const float* x, size_t n) override;

// The fp32 CPU backend (OpenBLAS for the GEMMs).
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace autotp
