// RMSNorm as Phi3RMSNorm computes it: normalize in fp32, cast, THEN multiply by the weight.
#include <cmath>

#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

void CpuBackend::rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t H, float eps,
                                 float* out, float* rstd, Use) {
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * H;
    float* o = out + n * H;
    // r = 1 / sqrt(mean_j x_j^2 + eps)
    float ss = 0.0f;
    for (int64_t j = 0; j < H; ++j) ss += xr[j] * xr[j];
    float r = 1.0f / std::sqrt(ss / float(H) + eps);
    // y_j = w_j * (x_j * r)
    for (int64_t j = 0; j < H; ++j) o[j] = w[j] * (xr[j] * r);
    rstd[n] = r;
  }
}

void CpuBackend::rmsnorm_backward(const float* dout, const float* x, const float* w,
                                  const float* rstd, int64_t N, int64_t H, float* dx, float* dw,
                                  Use) {
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * H;
    const float* g = dout + n * H;
    float* d = dx + n * H;
    const float r = rstd[n];
    // With xh = x * r and y = w * xh:  dxh_j = g_j * w_j,  dw_j += g_j * xh_j,
    // dx_j = r * (dxh_j - xh_j * mean_k(dxh_k * xh_k))   (r depends on every x_k).
    float dot = 0.0f;
    for (int64_t j = 0; j < H; ++j) {
      float xh = xr[j] * r;
      dot += g[j] * w[j] * xh;
      dw[j] += g[j] * xh;
    }
    dot /= float(H);
    for (int64_t j = 0; j < H; ++j) d[j] += r * (g[j] * w[j] - xr[j] * r * dot);
  }
}

}  // namespace autotp
