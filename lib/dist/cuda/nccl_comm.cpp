// NCCL on its own stream. Each collective is fenced by two events:
//   compute --ready--> comm stream: NCCL op --done--> compute
// so the op sees everything the compute stream issued before it, and whatever the compute
// stream issues after it sees the result; the host only enqueues.
#include <nccl.h>

#include <exception>

#include "dist/cuda/device_comm.hpp"
#include "dist/cuda/device_comm_base.hpp"

namespace autotp {

namespace {

void nccl_check(ncclResult_t r, const char* what, ncclComm_t comm = nullptr) {
  if (r == ncclSuccess) return;
  const char* last = comm ? ncclGetLastError(comm) : nullptr;
  fail(what, " failed: ", ncclGetErrorString(r),
       last && *last ? std::string(" (") + last + ")" : "");
}

class NcclComm final : public DeviceComm {
 public:
  NcclComm(MPI_Comm c, cudaStream_t compute) : DeviceComm(c), compute_(compute) {
    ncclUniqueId id{};
    if (rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, int(sizeof(id)), MPI_BYTE, 0, c);
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
    nccl_check(ncclCommInitRank(&comm_, size(), id, rank()),
               "ncclCommInitRank (NCCL needs one GPU per rank; use --comm mpi when ranks share "
               "a GPU)");
  }

  ~NcclComm() override {
    // While an error unwinds, the other ranks may never reach their destroy: abort locally
    // rather than risk waiting on them.
    if (comm_) {
      if (std::uncaught_exceptions() > 0) {
        ncclCommAbort(comm_);
      } else {
        cudaStreamSynchronize(stream_);
        ncclCommDestroy(comm_);
      }
    }
    cudaEventDestroy(done_);
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
  }

 protected:
  void dev_all_reduce(float* buf, size_t n, ReduceOp op) override {
    fenced("ncclAllReduce", [&] {
      return ncclAllReduce(buf, buf, n, ncclFloat, op == ReduceOp::Sum ? ncclSum : ncclMax, comm_,
                           stream_);
    });
  }
  void dev_all_gather(const float* send, float* recv, size_t count) override {
    fenced("ncclAllGather",
           [&] { return ncclAllGather(send, recv, count, ncclFloat, comm_, stream_); });
  }
  void dev_reduce_scatter_sum(const float* send, float* recv, size_t count) override {
    fenced("ncclReduceScatter", [&] {
      return ncclReduceScatter(send, recv, count, ncclFloat, ncclSum, comm_, stream_);
    });
  }
  void dev_broadcast(float* buf, size_t n, int root) override {
    fenced("ncclBroadcast",
           [&] { return ncclBroadcast(buf, buf, n, ncclFloat, root, comm_, stream_); });
  }

 private:
  template <typename Op>
  void fenced(const char* what, Op&& op) {
    cuda_check(cudaEventRecord(ready_, compute_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
    nccl_check(op(), what, comm_);
    cuda_check(cudaEventRecord(done_, stream_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(compute_, done_, 0), "cudaStreamWaitEvent");
  }

  cudaStream_t compute_ = nullptr, stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_comm(MPI_Comm comm, cudaStream_t compute) {
  return std::make_unique<NcclComm>(comm, compute);
}

}  // namespace autotp
