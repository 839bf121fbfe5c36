// Rotary position embedding, rotate-half (NeoX) layout on the first rotary_dim dims of a head.
#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

namespace {
// sign = +1: forward rotation, -1: its transpose (the backward; cos/sin carry the LongRoPE
// scale s, so the forward matrix is s*R(theta) and its transpose s*R(-theta)).
void rotate(float* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads, int64_t head_dim,
            int64_t rotary_dim, const float* cos, const float* sin, float sign) {
  const int64_t half = rotary_dim / 2;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t t = n % T;
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + n * ld + h * head_dim;
      // rotate_half(v) = [-v2, v1]:  y1 = v1*c - v2*s,  y2 = v2*c + v1*s  (pairs (i, i+half));
      // the dims from rotary_dim on pass through.
      for (int64_t i = 0; i < half; ++i) {
        float a = v[i], b = v[i + half], si = sign * s[i];
        v[i] = a * c[i] - b * si;
        v[i + half] = b * c[i] + a * si;
      }
    }
  }
}
}  // namespace

void CpuBackend::rope_forward(float* x, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
                              int64_t head_dim, int64_t rotary_dim, const float* cos,
                              const float* sin) {
  rotate(x, N, T, ld, n_heads, head_dim, rotary_dim, cos, sin, 1.0f);
}

void CpuBackend::rope_backward(float* dx, int64_t N, int64_t T, int64_t ld, int64_t n_heads,
                               int64_t head_dim, int64_t rotary_dim, const float* cos,
                               const float* sin) {
  // da = dy1*c + dy2*s,  db = dy2*c - dy1*s: the same rotation with -sin.
  rotate(dx, N, T, ld, n_heads, head_dim, rotary_dim, cos, sin, -1.0f);
}

}  // namespace autotp
