#include "kernels/sizing_backend.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

namespace {

size_t round_up(size_t n, size_t g) {
  return (n + g - 1) / g * g;
}

[[noreturn]] void no_compute(const char* op) {
  fail("sizing backend: ", op, " computes, but this backend only counts allocations");
}

}  // namespace

DeviceSizes DeviceSizes::cpu() {
  DeviceSizes s;
  s.device = "cpu";
  s.narrow_bytes = sizeof(float);
  s.alloc_align = 64;
  s.alloc_min = CpuBackend::rounded(0);
  return s;
}

DeviceSizes DeviceSizes::cuda() {
  DeviceSizes s;
  s.device = "cuda";
  s.narrow_bytes = 2;
  s.narrow_granularity = size_t(2) << 20;
  s.alloc_align = 1;
  s.alloc_min = 256;
  s.weight_copy_bytes = 2;
  return s;
}

DeviceSizes DeviceSizes::of(const std::string& device) {
  check(device == "cpu" || device == "cuda", "device sizes: '", device,
        "' is not one of cpu, cuda");
  return device == "cpu" ? cpu() : cuda();
}

DeviceSizes DeviceSizes::matching(const Backend& be) {
  DeviceSizes s = of(be.name());
  s.narrow_bytes = be.narrow_bytes();
  return s;
}

size_t DeviceSizes::alloc_bytes(size_t bytes) const {
  return bytes == 0 ? alloc_min : round_up(bytes, alloc_align);
}

size_t DeviceSizes::narrow_buffer_bytes(size_t n) const {
  if (narrow_bytes == sizeof(float)) return alloc_bytes(n * sizeof(float));  // alloc(n)
  return round_up(std::max<size_t>(n * narrow_bytes, 1), narrow_granularity);
}

void* SizingBackend::take(size_t address_bytes, size_t device_bytes) {
  const uintptr_t p = next_;
  // Addresses as far apart as the buffer's fp32 extent, plus a gap, so that no two overlap.
  next_ += round_up(std::max<size_t>(address_bytes, 1), 4096) + 4096;
  live_[p] = device_bytes;
  current_ += device_bytes;
  peak_ = std::max(peak_, current_);
  return reinterpret_cast<void*>(p);
}

void* SizingBackend::alloc_bytes(size_t bytes) {
  return take(bytes, sizes_.alloc_bytes(bytes));
}

float* SizingBackend::alloc_narrow(size_t n) {
  auto* p = static_cast<float*>(take(n * sizeof(float), sizes_.narrow_buffer_bytes(n)));
  narrow_.insert(p);
  return p;
}

void SizingBackend::free_bytes(void* p) {
  if (!p) return;
  auto it = live_.find(reinterpret_cast<uintptr_t>(p));
  check(it != live_.end(), "sizing backend: free_bytes of a pointer it did not allocate");
  current_ -= it->second;
  live_.erase(it);
  narrow_.erase(p);
}

size_t SizingBackend::bytes_of(const void* p) const {
  auto it = live_.find(reinterpret_cast<uintptr_t>(p));
  return it == live_.end() ? 0 : it->second;
}

void SizingBackend::to_host(const void*, void*, size_t) {
  no_compute("to_host");
}

// As CudaBackend::params_changed: the copy grows to the largest parameter buffer seen.
// Narrow parameters are their own copy.
void SizingBackend::params_changed(const float* params, size_t n) {
  if (!sizes_.weight_copy_bytes || n <= weight_copy_n_ || narrow_.count(params)) return;
  if (weight_copy_) free_bytes(weight_copy_);
  weight_copy_ = alloc_bytes(n * sizes_.weight_copy_bytes);
  weight_copy_n_ = n;
}

void SizingBackend::matmul(int64_t, int64_t, int64_t, const float*, bool, const float*, bool,
                           float*, bool) {
  no_compute("matmul");
}
void SizingBackend::add(const float*, float*, size_t) {
  no_compute("add");
}
void SizingBackend::scale(float*, size_t, float) {
  no_compute("scale");
}
void SizingBackend::copy_cols(const float*, int64_t, int64_t, float*, int64_t, int64_t, int64_t,
                              int64_t, bool) {
  no_compute("copy_cols");
}
void SizingBackend::embedding_forward(const int32_t*, int64_t, const float*, int64_t,
                                      const std::vector<VocabBlock>&, float*) {
  no_compute("embedding_forward");
}
void SizingBackend::embedding_backward(const int32_t*, int64_t, const float*, int64_t,
                                       const std::vector<VocabBlock>&, int64_t, float*) {
  no_compute("embedding_backward");
}
void SizingBackend::rmsnorm_forward(const float*, const float*, int64_t, int64_t, float, float*,
                                    float*, Use) {
  no_compute("rmsnorm_forward");
}
void SizingBackend::rmsnorm_backward(const float*, const float*, const float*, const float*,
                                     int64_t, int64_t, float*, float*, Use) {
  no_compute("rmsnorm_backward");
}
void SizingBackend::rope_forward(float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                 const float*, const float*) {
  no_compute("rope_forward");
}
void SizingBackend::rope_backward(float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                  const float*, const float*) {
  no_compute("rope_backward");
}
void SizingBackend::attention_forward(const float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                      float*, float*, Use) {
  no_compute("attention_forward");
}
void SizingBackend::attention_backward(const float*, const float*, const float*, const float*,
                                       int64_t, int64_t, int64_t, int64_t, int64_t, float*, Use) {
  no_compute("attention_backward");
}
void SizingBackend::swiglu_forward(const float*, int64_t, int64_t, float*, Use) {
  no_compute("swiglu_forward");
}
void SizingBackend::swiglu_backward(const float*, const float*, int64_t, int64_t, float*, Use) {
  no_compute("swiglu_backward");
}
void SizingBackend::ce_stats(const float*, int64_t, int64_t, const int32_t*,
                             const std::vector<VocabBlock>&, float*, float*, float*) {
  no_compute("ce_stats");
}
void SizingBackend::ce_rescale(const float*, const float*, int64_t, float*) {
  no_compute("ce_rescale");
}
void SizingBackend::ce_backward(float*, int64_t, int64_t, const float*, const float*,
                                const int32_t*, const std::vector<VocabBlock>&, int32_t, float,
                                Use) {
  no_compute("ce_backward");
}
void SizingBackend::adamw(float*, float*, float*, const float*, size_t, const AdamWStep&, bool,
                          float) {
  no_compute("adamw");
}
double SizingBackend::sum_squares(const float*, size_t) {
  no_compute("sum_squares");
}

}  // namespace autotp
