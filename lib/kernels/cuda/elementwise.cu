// Residual adds, scaling, and the strided column copies of the TP layout conversions.
#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
__global__ void add_kernel(const float* __restrict__ x, float* __restrict__ y, size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    y[i] += x[i];
}

__global__ void scale_kernel(float* x, size_t n, float alpha) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    x[i] *= alpha;
}

// dst[r, dst_col + j] (+)= src[r, src_col + j]; one grid-stride pass over rows * cols.
__global__ void copy_cols_kernel(const float* src, int64_t src_ld, float* dst, int64_t dst_ld,
                                 int64_t rows, int64_t cols, bool accumulate) {
  const size_t n = size_t(rows) * size_t(cols);
  for (size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += size_t(gridDim.x) * blockDim.x) {
    const int64_t r = int64_t(e / size_t(cols)), j = int64_t(e % size_t(cols));
    const float v = src[r * src_ld + j];
    float* d = dst + r * dst_ld + j;
    *d = accumulate ? *d + v : v;
  }
}
}  // namespace

void CudaBackendImpl::add(const float* x, float* y, size_t n) {
  if (!n) return;
  Timed t(*this, "elementwise");
  wrote(y, n * sizeof(float));
  add_kernel<<<grid_for(n), kThreads, 0, stream_>>>(x, y, n);
  AUTOTP_LAUNCHED("add_kernel");
}

void CudaBackendImpl::scale(float* x, size_t n, float alpha) {
  if (!n) return;
  Timed t(*this, "elementwise");
  wrote(x, n * sizeof(float));
  scale_kernel<<<grid_for(n), kThreads, 0, stream_>>>(x, n, alpha);
  AUTOTP_LAUNCHED("scale_kernel");
}

void CudaBackendImpl::copy_cols(const float* src, int64_t src_ld, int64_t src_col, float* dst,
                                int64_t dst_ld, int64_t dst_col, int64_t rows, int64_t cols,
                                bool accumulate) {
  if (rows <= 0 || cols <= 0) return;
  Timed t(*this, "elementwise");
  const size_t n = size_t(rows) * size_t(cols);
  wrote(dst + dst_col, size_t((rows - 1) * dst_ld + cols) * sizeof(float));
  copy_cols_kernel<<<grid_for(n), kThreads, 0, stream_>>>(src + src_col, src_ld, dst + dst_col,
                                                          dst_ld, rows, cols, accumulate);
  AUTOTP_LAUNCHED("copy_cols_kernel");
}

}  // namespace autotp::cuda
