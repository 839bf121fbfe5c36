#pragma once
// A Backend that only counts bytes: the model and the optimizer allocate on it exactly as they
// do on a device (the same code, the same buffers), and memory_plan (train/memory_plan.hpp)
// reads what they took. Buffers get distinct fake addresses (never dereferenced: the model only
// does pointer arithmetic on them); the memory ops that move data are no-ops, to_host and every
// compute op throw. So a memory prediction cannot drift from the allocations it predicts.
#include <cstddef>
#include <map>
#include <set>
#include <string>

#include "kernels/backend.hpp"

namespace autotp {

// How a device counts the bytes of a buffer, as its backend's current_bytes() does.
struct DeviceSizes {
  std::string device;             // "cpu" or "cuda"
  size_t narrow_bytes = 4;        // per element of alloc_narrow
  size_t narrow_granularity = 1;  // alloc_narrow's memory is whole multiples of this
  size_t alloc_align = 1;         // alloc_bytes' memory is whole multiples of this ...
  size_t alloc_min = 1;           // ... and this many for an empty one
  // Per parameter, a narrow copy of the weights the backend keeps from the first
  // params_changed() on (the CUDA backend's bf16 shadow that its GEMMs read).
  size_t weight_copy_bytes = 0;

  // CpuBackend: fp32 throughout, 64-byte lines (CpuBackend::rounded).
  static DeviceSizes cpu();
  // CudaBackend with the driver's virtual memory management (kernels/cuda/vmm.cuh): bf16 narrow
  // buffers in 2 MiB granules (CU_MEM_ALLOC_GRANULARITY_MINIMUM on H100/H200), cudaMalloc's
  // bytes as asked (256 for an empty buffer), and the bf16 weight copy. Not counted: the GEMM
  // operand scratch it grows at the first step (tens of MiB at Phi-4-mini's sizes).
  static DeviceSizes cuda();
  static DeviceSizes of(const std::string& device);  // "cpu" or "cuda"; Error otherwise
  // The sizes of the device `be` runs on (of(be.name())), with its narrow_bytes(): the CUDA
  // backend keeps narrow buffers in fp32 without the driver's virtual memory management.
  static DeviceSizes matching(const Backend& be);

  size_t alloc_bytes(size_t bytes) const;
  size_t narrow_buffer_bytes(size_t n) const;  // alloc_narrow(n)
};

class SizingBackend final : public Backend {
 public:
  explicit SizingBackend(DeviceSizes sizes) : sizes_(std::move(sizes)) {}
  std::string name() const override { return "sizing(" + sizes_.device + ")"; }

  void* alloc_bytes(size_t bytes) override;
  float* alloc_narrow(size_t n) override;
  size_t narrow_bytes() const override { return sizes_.narrow_bytes; }
  void free_bytes(void* p) override;
  void to_host(const void* dev, void* host, size_t bytes) override;
  void from_host(const void*, void*, size_t) override {}
  void copy(const void*, void*, size_t) override {}
  void fill_zero(void*, size_t) override {}
  void params_changed(const float* params, size_t n) override;
  size_t current_bytes() const override { return current_; }
  size_t peak_bytes() const override { return peak_; }
  void reset_peak_bytes() override { peak_ = current_; }

  // The device bytes of the live buffer that starts at p (0 for none).
  size_t bytes_of(const void* p) const;

  AUTOTP_BACKEND_OVERRIDES

 private:
  void* take(size_t address_bytes, size_t device_bytes);
  DeviceSizes sizes_;
  std::map<uintptr_t, size_t> live_;  // fake address -> device bytes
  uintptr_t next_ = uintptr_t(1) << 44;
  size_t current_ = 0, peak_ = 0;
  std::set<const void*> narrow_;  // the buffers from alloc_narrow
  size_t weight_copy_n_ = 0;      // parameters with a narrow copy (weight_copy_bytes each)
  void* weight_copy_ = nullptr;
};

}  // namespace autotp
