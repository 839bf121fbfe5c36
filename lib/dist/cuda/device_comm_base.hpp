#pragma once
// What the NCCL and the staged MPI communicators share: host pointers go to plain MPI, device
// pointers to the subclass; CUDA errors become autotp::Error.
#include <cuda_runtime.h>
#include <mpi.h>

#include <memory>

#include "core/error.hpp"
#include "dist/comm.hpp"

namespace autotp {

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(what, " failed: ", cudaGetErrorString(e));
}

enum class ReduceOp { Sum, Max };

class DeviceComm : public Comm {
 public:
  explicit DeviceComm(MPI_Comm c) : host_(make_mpi_comm(c)) {}
  int rank() const final { return host_->rank(); }
  int size() const final { return host_->size(); }
  void all_reduce_sum(float* buf, size_t n) final;
  void all_reduce_max(float* buf, size_t n) final;
  void all_gather(const float* send, float* recv, size_t count) final;
  void reduce_scatter_sum(const float* send, float* recv, size_t count) final;
  void broadcast(float* buf, size_t n, int root) final;
  void barrier() final { host_->barrier(); }
  void reduce_sum_async(float* buf, size_t n, int root) final;
  void all_reduce_sum_async(float* buf, size_t n) final;
  void wait_all() final;
  // Marks order the device ops; the host ops (rare: the optimizer's are on device buffers) are
  // completed whole by any wait.
  size_t mark() final { return dev_mark(); }
  void wait_until(size_t mark) final;

 protected:
  virtual void dev_all_reduce(float* buf, size_t n, ReduceOp op) = 0;
  virtual void dev_all_gather(const float* send, float* recv, size_t count) = 0;
  virtual void dev_reduce_scatter_sum(const float* send, float* recv, size_t count) = 0;
  virtual void dev_broadcast(float* buf, size_t n, int root) = 0;
  // The async ops on device buffers. An implementation may complete them on return, ordered on
  // the compute stream like the blocking ops (staged MPI; the all-reduce defaults to the
  // blocking one); NCCL runs them beside the compute stream until dev_wait_all().
  virtual void dev_reduce_sum_async(float* buf, size_t n, int root) = 0;
  virtual void dev_all_reduce_sum_async(float* buf, size_t n) {
    dev_all_reduce(buf, n, ReduceOp::Sum);
  }
  virtual void dev_wait_all() {}
  // Ops that complete on return need no marks: 0, and nothing to wait for.
  virtual size_t dev_mark() { return 0; }
  virtual void dev_wait_until(size_t mark) { (void)mark; }

 private:
  // true for device (or managed) memory, false for host memory; `what` names the op for the
  // message when send and recv disagree.
  static bool on_device(const void* p);
  static bool both_on_device(const void* send, const void* recv, const char* what);
  std::unique_ptr<Comm> host_;
};

}  // namespace autotp
