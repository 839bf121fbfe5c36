// Causal self-attention with grouped KV heads (eager_attention_forward of transformers), one
// (batch, head) at a time: the T x T score matrix of one head stays in cache, the three
// products go through sgemm with the qkv row stride, and only the log-sum-exp of each score
// row is kept for the backward (which recomputes the probabilities, as flash attention does).
#include <cblas.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

namespace {

struct Heads {
  int64_t T, nq, nkv, hd, ld, ldo;  // ld: qkv row stride, ldo: out row stride
  // Query head h reads kv head h / (nq / nkv) (repeat_kv).
  int64_t kv_of(int64_t h) const { return h / (nq / nkv); }
  const float* q(const float* qkv, int64_t b, int64_t h) const { return qkv + b * T * ld + h * hd; }
  const float* k(const float* qkv, int64_t b, int64_t h) const {
    return qkv + b * T * ld + (nq + kv_of(h)) * hd;
  }
  const float* v(const float* qkv, int64_t b, int64_t h) const {
    return qkv + b * T * ld + (nq + nkv + kv_of(h)) * hd;
  }
};

// S = scale * Q K^T for one head: S[i, j] = scale * sum_d q[i, d] k[j, d].
void scores(const Heads& g, const float* q, const float* k, float scale, float* S) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(g.T), int(g.T), int(g.hd), 1.0f, q,
              int(g.ld), k, int(g.ld), 0.0f, S, int(g.T));
  // transformers scales the product (matmul, then * scaling); so do we.
  for (int64_t i = 0; i < g.T * g.T; ++i) S[i] *= scale;
}

}  // namespace

void CpuBackend::attention_forward(const float* qkv, int64_t B, int64_t T, int64_t nq, int64_t nkv,
                                   int64_t hd, float* out, float* lse, Use use) {
  (void)use;  // fp32 either way
  const Heads g{T, nq, nkv, hd, (nq + 2 * nkv) * hd, nq * hd};
  const float scale = 1.0f / std::sqrt(float(hd));
  std::vector<float> S(size_t(T * T));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < nq; ++h) {
      scores(g, g.q(qkv, b, h), g.k(qkv, b, h), scale, S.data());
      float* L = lse + (b * nq + h) * T;
      for (int64_t i = 0; i < T; ++i) {
        // Causal softmax over j <= i: P[i, j] = exp(S[i, j] - m) / sum_j' exp(S[i, j'] - m);
        // lse[i] = m + log(sum) so that P[i, j] = exp(S[i, j] - lse[i]) in the backward.
        float* row = S.data() + i * T;
        float m = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) m = row[j] > m ? row[j] : m;
        float sum = 0.0f;
        for (int64_t j = 0; j <= i; ++j) {
          row[j] = std::exp(row[j] - m);
          sum += row[j];
        }
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
        for (int64_t j = i + 1; j < T; ++j) row[j] = 0.0f;
        L[i] = m + std::log(sum);
      }
      // O = P V: out[i, h, :] = sum_j P[i, j] v[j, :]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(T), int(hd), int(T), 1.0f,
                  S.data(), int(T), g.v(qkv, b, h), int(g.ld), 0.0f, out + b * T * g.ldo + h * hd,
                  int(g.ldo));
    }
  }
}

void CpuBackend::attention_backward(const float* dout, const float* qkv, const float* out,
                                    const float* lse, int64_t B, int64_t T, int64_t nq, int64_t nkv,
                                    int64_t hd, float* dqkv, Use) {
  (void)out;  // D_i below is taken from P and dP; a flash kernel takes it from dO . O instead
  const Heads g{T, nq, nkv, hd, (nq + 2 * nkv) * hd, nq * hd};
  const float scale = 1.0f / std::sqrt(float(hd));
  std::vector<float> P(size_t(T * T)), dP(size_t(T * T));
  std::memset(dqkv, 0, size_t(B * T * g.ld) * sizeof(float));  // K and V accumulate over heads
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < nq; ++h) {
      const float* q = g.q(qkv, b, h);
      const float* k = g.k(qkv, b, h);
      const float* v = g.v(qkv, b, h);
      const float* dO = dout + b * T * g.ldo + h * hd;
      float* dq = dqkv + (q - qkv);
      float* dk = dqkv + (k - qkv);
      float* dv = dqkv + (v - qkv);
      const float* L = lse + (b * nq + h) * T;
      // Recompute P[i, j] = exp(S[i, j] - lse[i]) for j <= i, 0 above the diagonal.
      scores(g, q, k, scale, P.data());
      for (int64_t i = 0; i < T; ++i) {
        float* row = P.data() + i * T;
        for (int64_t j = 0; j <= i; ++j) row[j] = std::exp(row[j] - L[i]);
        for (int64_t j = i + 1; j < T; ++j) row[j] = 0.0f;
      }
      // dV += P^T dO
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(T), int(hd), int(T), 1.0f, P.data(),
                  int(T), dO, int(g.ldo), 1.0f, dv, int(g.ld));
      // dP = dO V^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(T), int(hd), 1.0f, dO,
                  int(g.ldo), v, int(g.ld), 0.0f, dP.data(), int(T));
      // Softmax backward: dS[i, j] = P[i, j] * (dP[i, j] - D_i), D_i = sum_j P[i, j] dP[i, j];
      // the 1/sqrt(hd) of S = scale * Q K^T goes into the two products below.
      for (int64_t i = 0; i < T; ++i) {
        float* p = P.data() + i * T;
        float* dp = dP.data() + i * T;
        float D = 0.0f;
        for (int64_t j = 0; j <= i; ++j) D += p[j] * dp[j];
        for (int64_t j = 0; j <= i; ++j) dp[j] = p[j] * (dp[j] - D);
        for (int64_t j = i + 1; j < T; ++j) dp[j] = 0.0f;
      }
      // dQ = scale * dS K  (each query head owns its rows);  dK += scale * dS^T Q
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(T), int(hd), int(T), scale,
                  dP.data(), int(T), k, int(g.ld), 0.0f, dq, int(g.ld));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(T), int(hd), int(T), scale,
                  dP.data(), int(T), q, int(g.ld), 1.0f, dk, int(g.ld));
    }
  }
}

}  // namespace autotp
