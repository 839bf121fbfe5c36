// SwiGLU of Phi3MLP: gate, up = chunk(gate_up(x), 2); out = up * silu(gate).
#include <cmath>

#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

void CpuBackend::swiglu_forward(const float* gu, int64_t N, int64_t I, float* out, Use) {
  for (int64_t n = 0; n < N; ++n) {
    const float* g = gu + n * 2 * I;
    const float* u = g + I;
    float* o = out + n * I;
    // silu(g) = g * sigmoid(g)
    for (int64_t i = 0; i < I; ++i) o[i] = u[i] * (g[i] / (1.0f + std::exp(-g[i])));
  }
}

void CpuBackend::swiglu_backward(const float* dout, const float* gu, int64_t N, int64_t I,
                                 float* dgu, Use) {
  for (int64_t n = 0; n < N; ++n) {
    const float* g = gu + n * 2 * I;
    const float* u = g + I;
    const float* d = dout + n * I;
    float* dg = dgu + n * 2 * I;
    float* du = dg + I;
    for (int64_t i = 0; i < I; ++i) {
      // du = d * silu(g);  dg = d * u * silu'(g),  silu'(g) = sig(g) * (1 + g * (1 - sig(g)))
      float sig = 1.0f / (1.0f + std::exp(-g[i]));
      du[i] = d[i] * g[i] * sig;
      dg[i] = d[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    }
  }
}

}  // namespace autotp
