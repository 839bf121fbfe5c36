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

  AUTOTP_BACKEND_OVERRIDES
};

}  // namespace autotp
