// Residual adds, scaling, and the strided column copies that TP layout conversions are made of.
#include <cstring>

#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

void CpuBackend::add(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

void CpuBackend::scale(float* x, size_t n, float alpha) {
  for (size_t i = 0; i < n; ++i) x[i] *= alpha;
}

void CpuBackend::copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst,
                           int64_t dst_ld, int64_t dst_col, int64_t rows, int64_t cols,
                           bool accumulate) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * src_ld + src_col;
    float* d = dst + r * dst_ld + dst_col;
    if (accumulate) {
      for (int64_t j = 0; j < cols; ++j) d[j] += s[j];
    } else {
      std::memcpy(d, s, size_t(cols) * sizeof(float));
    }
  }
}

}  // namespace autotp
