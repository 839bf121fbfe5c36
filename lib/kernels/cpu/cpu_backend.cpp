// Memory ops of the CPU backend: device memory is host memory.
#include "kernels/cpu/cpu_backend.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"

namespace autotp {

void* CpuBackend::alloc_bytes(size_t bytes) {
  const size_t n = rounded(bytes);
  void* p = std::aligned_alloc(64, n);
  check(p != nullptr, "cpu backend: out of memory allocating ", bytes, " bytes (", current_bytes_,
        " bytes held by this backend)");
  std::memset(p, 0, n);
  live_[p] = n;
  current_bytes_ += n;
  peak_bytes_ = std::max(peak_bytes_, current_bytes_);
  return p;
}

void CpuBackend::free_bytes(void* p) {
  if (!p) return;
  auto it = live_.find(p);
  check(it != live_.end(), "cpu backend: free_bytes of a pointer it did not allocate");
  current_bytes_ -= it->second;
  live_.erase(it);
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
