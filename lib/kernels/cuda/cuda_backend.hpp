#pragma once
// The CUDA backend: the Backend interface (kernels/backend.hpp) on one GPU. Parameters,
// gradients, optimizer state and activations are fp32 buffers as the interface says; GEMMs run
// on bf16 copies of their operands with fp32 accumulation (cuBLASLt), the weights' bf16 copies
// refreshed in params_changed(). Every op is issued on stream(); nothing synchronizes the host
// except to_host/sum_squares/synchronize.
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <string>

#include "kernels/backend.hpp"

namespace autotp {

class CudaBackend : public Backend {
 public:
  virtual int device() const = 0;
  virtual std::string device_name() const = 0;  // e.g. "NVIDIA H100 80GB HBM3"
  virtual cudaStream_t stream() const = 0;      // the compute stream
  // GPU time per op category ("gemm", "attention", "norm+rope", "swiglu", "embedding",
  // "cross_entropy", "elementwise", "optimizer"), measured with CUDA events around each op
  // while profiling is on (it serializes nothing else; the overhead is a few us per op).
  virtual void set_profiling(bool on) = 0;
  virtual std::map<std::string, double> op_times_ms() = 0;  // synchronizes
  virtual void reset_op_times() = 0;
  // The scratch slots it holds now (grown to their largest use, kept between calls), by slot
  // name: the part of peak_bytes() that memory_plan does not predict.
  virtual std::map<std::string, size_t> scratch_bytes() const = 0;
  // Frees the scratch slots (after a measurement whose operands were larger than training's:
  // they would stay allocated, counted in peak_bytes()).
  virtual void free_scratch() = 0;
};

// Number of visible GPUs (0 when there is no driver or no device; never throws).
int cuda_device_count();
// A backend on GPU `device` (cudaSetDevice is called). Throws Error with the CUDA message.
// gemm_tables: a folder of GEMM algorithm tables (share/gemm_tuning, see gemm_tuner.cuh), of
// which the one tuned on this GPU and cuBLASLt, if any, is used; empty: none.
std::unique_ptr<CudaBackend> make_cuda_backend(int device, const std::string& gemm_tables = "");

}  // namespace autotp
