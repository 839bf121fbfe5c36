// The CUDA backend's core: device selection, the stream and cuBLAS handle, tracked memory,
// host transfers, scratch buffers and the per-op-category profiler.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp {

int cuda_device_count() {
  int n = 0;
  // Without a driver or a GPU this returns an error: that means "no GPU", not a failure. The
  // sticky error state is cleared so that it does not surface at a later, unrelated check.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<CudaBackend> make_cuda_backend(int device, const std::string& gemm_tables) {
  return std::make_unique<cuda::CudaBackendImpl>(device, gemm_tables);
}

namespace cuda {

void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  fail("CUDA error in ", call, " (", file, ":", line, "): ", cudaGetErrorName(e), ": ",
       cudaGetErrorString(e));
}

void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  fail("cuBLAS error in ", call, " (", file, ":", line, "): ", cublasGetStatusName(s), ": ",
       cublasGetStatusString(s));
}

Blocks to_blocks(const std::vector<VocabBlock>& v, const char* op) {
  check(v.size() <= size_t(kMaxVocabBlocks), "cuda ", op, ": ", v.size(),
        " vocabulary blocks, at most ", kMaxVocabBlocks,
        " supported (raise kMaxVocabBlocks in kernels/cuda/cuda_impl.cuh)");
  Blocks b;
  b.n = int(v.size());
  for (size_t k = 0; k < v.size(); ++k) {
    b.col[k] = v[k].col;
    b.begin[k] = v[k].begin;
    b.len[k] = v[k].len;
  }
  return b;
}

// The tuner's buffers are tracked (peak_bytes) and, like every live buffer, freed by the
// destructor.
CudaBackendImpl::CudaBackendImpl(int device, const std::string& gemm_tables)
    : device_(device),
      tuner_([this](size_t bytes) { return device_alloc(bytes); },
             [this](void* p) { device_free(p); }, gemm_tables) {
  const int count = cuda_device_count();
  check(device >= 0 && device < count, "cuda backend: GPU ", device, " requested but ", count,
        " visible (check CUDA_VISIBLE_DEVICES and the driver)");
  AUTOTP_CUDA(cudaSetDevice(device));
  cudaDeviceProp prop;
  AUTOTP_CUDA(cudaGetDeviceProperties(&prop, device));
  device_name_ = prop.name;
  // A blocking stream: it orders after work on the legacy default stream (cudaMemset, and
  // libraries that use stream 0), so buffers are never seen half-initialized.
  AUTOTP_CUDA(cudaStreamCreate(&stream_));
  AUTOTP_CUBLAS(cublasCreate(&cublas_));
  AUTOTP_CUBLAS(cublasSetStream(cublas_, stream_));
  const char* outputs = std::getenv("AUTOTP_CUDA_GEMM_OUTPUTS");
  narrow_off_ = outputs && std::string(outputs) == "fp32";
  gemm_c_fp32_ = outputs && std::string(outputs) == "fp32c";
  vmm_ = vmm_supported(device);
}

CudaBackendImpl::~CudaBackendImpl() {
  // Nothing here may throw: errors are ignored, the process is ending or moving on.
  cudaStreamSynchronize(stream_);
  for (auto& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  for (auto e : free_events_) cudaEventDestroy(e);
  for (auto& kv : live_) cudaFree(kv.first);
  for (auto& kv : narrow_allocs_) vmm_free(kv.second.range);
  if (cublas_) cublasDestroy(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaBackendImpl::synchronize() {
  AUTOTP_CUDA(cudaStreamSynchronize(stream_));
}

// ---------------------------------------------------------------- memory

void* CudaBackendImpl::device_alloc(size_t bytes) {
  void* p = nullptr;
  const size_t rounded = bytes == 0 ? 256 : bytes;
  cudaError_t e = cudaMalloc(&p, rounded);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail("cuda backend: out of GPU memory allocating ", bytes, " bytes on GPU ", device_, " (",
         current_bytes_, " bytes held by this backend, peak ", peak_bytes_,
         "): use a smaller micro-batch/sequence, more TP, or ZeRO; ", cudaGetErrorString(e));
  }
  live_[p] = rounded;
  current_bytes_ += rounded;
  peak_bytes_ = std::max(peak_bytes_, current_bytes_);
  return p;
}

void CudaBackendImpl::device_free(void* p) {
  if (!p) return;
  auto it = live_.find(p);
  check(it != live_.end(), "cuda backend: free_bytes of a pointer it did not allocate");
  current_bytes_ -= it->second;
  live_.erase(it);
  // cudaFree waits for the device, so pending kernels that use p finish first.
  AUTOTP_CUDA(cudaFree(p));
}

void* CudaBackendImpl::alloc_bytes(size_t bytes) {
  void* p = device_alloc(bytes);
  AUTOTP_CUDA(cudaMemsetAsync(p, 0, bytes == 0 ? 256 : bytes, stream_));
  return p;
}

float* CudaBackendImpl::alloc_narrow(size_t n) {
  if (narrow_bytes() == sizeof(float)) return alloc(n);
  const VmmRange r = vmm_alloc(device_, n * sizeof(float), n * sizeof(__nv_bfloat16));
  narrow_allocs_[reinterpret_cast<uintptr_t>(r.ptr)] = {r, n};
  current_bytes_ += r.backed;
  peak_bytes_ = std::max(peak_bytes_, current_bytes_);
  AUTOTP_CUDA(cudaMemsetAsync(r.ptr, 0, r.backed, stream_));
  return static_cast<float*>(r.ptr);
}

void CudaBackendImpl::free_bytes(void* p) {
  auto it = narrow_allocs_.find(reinterpret_cast<uintptr_t>(p));
  if (it == narrow_allocs_.end()) return device_free(p);
  // Unlike cudaFree, unmapping does not wait for the kernels that use the memory.
  AUTOTP_CUDA(cudaDeviceSynchronize());
  forget_narrow(p, it->second.n * sizeof(float));
  if (params_narrow_ && params_ == p) {
    params_ = nullptr;
    params_n_ = 0;
    params_narrow_ = false;
    shadow_ = nullptr;
  }
  current_bytes_ -= it->second.range.backed;
  vmm_free(it->second.range);
  narrow_allocs_.erase(it);
}

bool CudaBackendImpl::in_narrow_alloc(const void* p, size_t bytes) const {
  if (narrow_allocs_.empty() || !bytes) return false;
  const auto b = reinterpret_cast<uintptr_t>(p);
  // The last buffer starting below the range's end is the only one that can overlap it.
  auto it = narrow_allocs_.lower_bound(b + bytes);
  if (it == narrow_allocs_.begin()) return false;
  --it;
  return it->first + it->second.n * sizeof(float) > b;
}

void CudaBackendImpl::to_host(const void* dev, void* host, size_t bytes) {
  if (!bytes) return;
  AUTOTP_CUDA(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, stream_));
  AUTOTP_CUDA(cudaStreamSynchronize(stream_));
}

void CudaBackendImpl::from_host(const void* host, void* dev, size_t bytes) {
  if (!bytes) return;
  touched(dev, bytes);
  AUTOTP_CUDA(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream_));
  // The caller may reuse `host` at once; with pinned memory the copy would still be in flight.
  AUTOTP_CUDA(cudaStreamSynchronize(stream_));
}

void CudaBackendImpl::copy(const void* src, void* dst, size_t bytes) {
  if (!bytes || src == dst) return;
  touched(dst, bytes);
  AUTOTP_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackendImpl::fill_zero(void* p, size_t bytes) {
  if (!bytes) return;
  touched(p, bytes);
  AUTOTP_CUDA(cudaMemsetAsync(p, 0, bytes, stream_));
}

void* CudaBackendImpl::scratch(Scratch which, size_t bytes) {
  const int k = int(which);
  if (scratch_bytes_[k] < bytes) {
    device_free(scratch_[k]);  // waits for the ops that used the old buffer
    scratch_[k] = nullptr;
    scratch_bytes_[k] = 0;
    scratch_[k] = device_alloc(bytes);
    scratch_bytes_[k] = bytes;
  }
  return scratch_[k];
}

std::map<std::string, size_t> CudaBackendImpl::scratch_bytes() const {
  std::map<std::string, size_t> out;
  for (int k = 0; k < int(Scratch::Count); ++k)
    if (scratch_bytes_[k]) out[kScratchNames[k]] = scratch_bytes_[k];
  return out;
}

void CudaBackendImpl::free_scratch() {
  // A narrow copy held in a slot goes with it.
  drop_narrow([&](const Narrow& r) {
    const auto d = reinterpret_cast<uintptr_t>(r.data);
    for (int k = 0; k < int(Scratch::Count); ++k) {
      const auto p = reinterpret_cast<uintptr_t>(scratch_[k]);
      if (p && d >= p && d < p + scratch_bytes_[k]) return true;
    }
    return false;
  });
  for (int k = 0; k < int(Scratch::Count); ++k) {
    device_free(scratch_[k]);
    scratch_[k] = nullptr;
    scratch_bytes_[k] = 0;
  }
}

// ---------------------------------------------------------------- profiling

cudaEvent_t CudaBackendImpl::take_event() {
  if (!free_events_.empty()) {
    cudaEvent_t e = free_events_.back();
    free_events_.pop_back();
    return e;
  }
  cudaEvent_t e;
  AUTOTP_CUDA(cudaEventCreate(&e));
  return e;
}

CudaBackendImpl::Timed::Timed(CudaBackendImpl& be, const char* category)
    : be_(be), category_(category) {
  if (!be_.profiling_) return;
  start_ = be_.take_event();
  AUTOTP_CUDA(cudaEventRecord(start_, be_.stream_));
}

CudaBackendImpl::Timed::~Timed() {
  if (!start_) return;
  // A destructor must not throw: without a stop event the sample is dropped.
  cudaEvent_t stop = nullptr;
  if (!be_.free_events_.empty()) {
    stop = be_.free_events_.back();
    be_.free_events_.pop_back();
  } else if (cudaEventCreate(&stop) != cudaSuccess) {
    be_.free_events_.push_back(start_);
    return;
  }
  if (cudaEventRecord(stop, be_.stream_) != cudaSuccess) {
    be_.free_events_.push_back(start_);
    be_.free_events_.push_back(stop);
    return;
  }
  be_.pending_.push_back({category_, start_, stop});
}

std::map<std::string, double> CudaBackendImpl::op_times_ms() {
  synchronize();
  for (auto& p : pending_) {
    float ms = 0.0f;
    AUTOTP_CUDA(cudaEventElapsedTime(&ms, p.start, p.stop));
    times_ms_[p.category] += double(ms);
    free_events_.push_back(p.start);
    free_events_.push_back(p.stop);
  }
  pending_.clear();
  return times_ms_;
}

void CudaBackendImpl::reset_op_times() {
  op_times_ms();  // recycles the pending events
  times_ms_.clear();
}

}  // namespace cuda
}  // namespace autotp
