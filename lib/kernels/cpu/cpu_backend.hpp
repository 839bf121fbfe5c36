#pragma once
// The fp32 CPU backend. Each group of ops lives in the file named for it (matmul.cpp,
// attention.cpp, ...), with the math beside the loop.
#include "kernels/backend.hpp"

namespace autotp {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  static void set_threads(int n);  // OpenBLAS threads of this process

  void* alloc_bytes(size_t bytes) override;
  void free_bytes(void* p) override;
  void to_host(const void* dev, void* host, size_t bytes) override;
  void from_host(const void* host, void* dev, size_t bytes) override;
  void copy(const void* src, void* dst, size_t bytes) override;
  void fill_zero(void* p, size_t bytes) override;

  void matmul(int64_t M, int64_t N, int64_t K, const float* A, bool transA, const float* B,
              bool transB, float* C, bool accumulate) override;

  void add(const float* x, float* y, size_t n) override;
  void scale(float* x, size_t n, float alpha) override;
  void copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst, int64_t dst_ld,
                 int64_t dst_col, int64_t rows, int64_t cols, bool accumulate) override;

  void embedding_forward(const int32_t* ids, int64_t n, const float* table, int64_t dim,
                         const std::vector<VocabBlock>& blocks, float* out) override;
  void embedding_backward(const int32_t* ids, int64_t n, const float* dout, int64_t dim,
                          const std::vector<VocabBlock>& blocks, int64_t padding_idx,
                          float* dtable) override;

  void rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t H, float eps, float* out,
                       float* rstd) override;
  void rmsnorm_backward(const float* dout, const float* x, const float* w, const float* rstd,
                        int64_t N, int64_t H, float* dx, float* dw) override;

  void rope_forward(float* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads, int64_t head_dim,
                    int64_t rotary_dim, const float* cos, const float* sin) override;
  void rope_backward(float* dx, int64_t N, int64_t T, int64_t ld, int64_t n_heads, int64_t head_dim,
                     int64_t rotary_dim, const float* cos, const float* sin) override;

  void attention_forward(const float* qkv, int64_t B, int64_t T, int64_t nq, int64_t nkv,
                         int64_t hd, float* out, float* lse) override;
  void attention_backward(const float* dout, const float* qkv, const float* out, const float* lse,
                          int64_t B, int64_t T, int64_t nq, int64_t nkv, int64_t hd,
                          float* dqkv) override;

  void swiglu_forward(const float* gu, int64_t N, int64_t I, float* out) override;
  void swiglu_backward(const float* dout, const float* gu, int64_t N, int64_t I,
                       float* dgu) override;

  void ce_max(const float* logits, int64_t N, int64_t V, float* m) override;
  void ce_sumexp(const float* logits, int64_t N, int64_t V, const float* m, const int32_t* targets,
                 const std::vector<VocabBlock>& blocks, float* s, float* z) override;
  void ce_backward(float* logits, int64_t N, int64_t V, const float* m, const float* s,
                   const int32_t* targets, const std::vector<VocabBlock>& blocks,
                   int32_t ignore_index, float scale) override;

  void adamw(float* p, float* m, float* v, const float* g, size_t n, const AdamWStep& s, bool decay,
             float grad_scale) override;
  double sum_squares(const float* x, size_t n) override;
};

}  // namespace autotp
