#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "core/error.hpp"
#include "kernels/cuda/vmm.cuh"

namespace autotp::cuda {

namespace {

struct Driver {
  decltype(&cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&cuMemAddressReserve) reserve = nullptr;
  decltype(&cuMemAddressFree) address_free = nullptr;
  decltype(&cuMemCreate) create = nullptr;
  decltype(&cuMemRelease) release = nullptr;
  decltype(&cuMemMap) map = nullptr;
  decltype(&cuMemUnmap) unmap = nullptr;
  decltype(&cuMemSetAccess) set_access = nullptr;
  decltype(&cuDeviceGetAttribute) attribute = nullptr;
};

template <typename F>
void load(F& f, const char* name) {
  cudaDriverEntryPointQueryResult found{};
  void* p = nullptr;
  const cudaError_t e =
      cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &found);
  check(e == cudaSuccess && found == cudaDriverEntryPointSuccess && p,
        "cuda backend: the driver has no ", name, " (", cudaGetErrorString(e),
        "); a driver for CUDA 12 or later is needed");
  f = reinterpret_cast<F>(p);
}

const Driver& driver() {
  static const Driver d = [] {
    Driver d;
    load(d.granularity, "cuMemGetAllocationGranularity");
    load(d.reserve, "cuMemAddressReserve");
    load(d.address_free, "cuMemAddressFree");
    load(d.create, "cuMemCreate");
    load(d.release, "cuMemRelease");
    load(d.map, "cuMemMap");
    load(d.unmap, "cuMemUnmap");
    load(d.set_access, "cuMemSetAccess");
    load(d.attribute, "cuDeviceGetAttribute");
    return d;
  }();
  return d;
}

void check_cu(CUresult r, const char* call, size_t bytes) {
  check(r == CUDA_SUCCESS, "cuda backend: ", call, " of ", bytes, " bytes failed (CUresult ",
        int(r),
        r == CUDA_ERROR_OUT_OF_MEMORY
            ? ": out of GPU memory; use a smaller micro-batch/sequence, more TP, or ZeRO)"
            : ")");
}

size_t round_up(size_t x, size_t g) {
  return (x + g - 1) / g * g;
}

}  // namespace

bool vmm_supported(int device) noexcept {
  try {
    int on = 0;
    return driver().attribute(&on, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
                              device) == CUDA_SUCCESS &&
           on;
  } catch (const Error&) {
    return false;
  }
}

VmmRange vmm_alloc(int device, size_t reserve_bytes, size_t backed_bytes) {
  const Driver& d = driver();
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  size_t g = 0;
  check_cu(d.granularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
           "cuMemGetAllocationGranularity", 0);
  VmmRange r;
  r.backed = round_up(std::max<size_t>(backed_bytes, 1), g);
  r.reserved = std::max(r.backed, round_up(reserve_bytes, g));
  CUdeviceptr va = 0;
  check_cu(d.reserve(&va, r.reserved, 0, 0, 0), "cuMemAddressReserve", r.reserved);
  CUmemGenericAllocationHandle h = 0;
  CUresult e = d.create(&h, r.backed, &prop, 0);
  if (e != CUDA_SUCCESS) {
    d.address_free(va, r.reserved);
    check_cu(e, "cuMemCreate", r.backed);
  }
  e = d.map(va, r.backed, 0, h, 0);
  if (e == CUDA_SUCCESS) {
    CUmemAccessDesc access{};
    access.location = prop.location;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    e = d.set_access(va, r.backed, &access, 1);
    if (e != CUDA_SUCCESS) d.unmap(va, r.backed);
  }
  if (e != CUDA_SUCCESS) {
    d.release(h);
    d.address_free(va, r.reserved);
    check_cu(e, "cuMemMap/cuMemSetAccess", r.backed);
  }
  r.ptr = reinterpret_cast<void*>(va);
  r.handle = h;
  return r;
}

void vmm_free(const VmmRange& r) noexcept {
  if (!r.ptr) return;
  const Driver& d = driver();
  const auto va = reinterpret_cast<CUdeviceptr>(r.ptr);
  d.unmap(va, r.backed);
  d.release(r.handle);
  d.address_free(va, r.reserved);
}

}  // namespace autotp::cuda
