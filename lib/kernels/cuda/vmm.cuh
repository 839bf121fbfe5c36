#pragma once
// Device memory with more addresses than memory (CUDA's virtual memory management): a range of
// `reserved` bytes of device addresses of which only the first `backed` have memory behind
// them. alloc_narrow's buffers use it: a buffer of n floats that holds n bf16 values keeps its
// own 4n bytes of addresses (no other buffer can lie there, so the backend's bookkeeping by fp32
// address stays exact) and 2n bytes of memory (an fp32 access past them faults instead of
// touching another buffer). The driver's entry points are looked up through the runtime, so
// nothing links libcuda: the binaries still start on machines without a GPU.
#include <cstddef>

namespace autotp::cuda {

struct VmmRange {
  void* ptr = nullptr;
  size_t reserved = 0, backed = 0;  // rounded up to the allocation granularity
  unsigned long long handle = 0;    // CUmemGenericAllocationHandle of the backed part
};

// Whether the driver can do this on `device` (never throws).
bool vmm_supported(int device) noexcept;
// Throws Error naming the failed driver call (out of memory included).
VmmRange vmm_alloc(int device, size_t reserve_bytes, size_t backed_bytes);
// Unmaps and releases; the device must be done with the range. Never throws.
void vmm_free(const VmmRange& r) noexcept;

}  // namespace autotp::cuda
