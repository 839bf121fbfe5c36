// Memory ops of the CPU backend: device memory is host memory.
#include "kernels/cpu/cpu_backend.hpp"

#include <cstdlib>
#include <cstring>

#include "core/error.hpp"

namespace autotp {

void* CpuBackend::alloc_bytes(size_t bytes) {
  // 64-byte alignment keeps BLAS and the vectorised loops on whole cache lines.
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  check(p != nullptr, "cpu backend: out of memory allocating ", bytes, " bytes");
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  return p;
}

void CpuBackend::free_bytes(void* p) {
  std::free(p);
}

void CpuBackend::to_host(const void* dev, void* host, size_t bytes) {
  if (bytes) std::memcpy(host, dev, bytes);
}

void CpuBackend::from_host(const void* host, void* dev, size_t bytes) {
  if (bytes) std::memcpy(dev, host, bytes);
}

void CpuBackend::copy(const void* src, void* dst, size_t bytes) {
  if (bytes && src != dst) std::memmove(dst, src, bytes);
}

void CpuBackend::fill_zero(void* p, size_t bytes) {
  if (bytes) std::memset(p, 0, bytes);
}

std::unique_ptr<Backend> make_cpu_backend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace autotp
