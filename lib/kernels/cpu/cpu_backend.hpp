#pragma once
// The fp32 CPU backend. Each group of ops lives in the file named for it (matmul.cpp,
// attention.cpp, ...), with the math beside the loop.
#include <unordered_map>

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
  size_t current_bytes() const override { return current_bytes_; }
  size_t peak_bytes() const override { return peak_bytes_; }
  void reset_peak_bytes() override { peak_bytes_ = current_bytes_; }
  // The bytes alloc_bytes(bytes) holds: whole 64-byte lines (BLAS and the vectorised loops stay
  // on cache lines), at least one. The sizing backend counts CPU buffers with it.
  static size_t rounded(size_t bytes) { return bytes == 0 ? 64 : (bytes + 63) / 64 * 64; }

  AUTOTP_BACKEND_OVERRIDES

 private:
  std::unordered_map<void*, size_t> live_;  // buffer -> rounded bytes
  size_t current_bytes_ = 0, peak_bytes_ = 0;
};

}  // namespace autotp
