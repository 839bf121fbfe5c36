// NCCL on its own stream. Each collective is fenced by two events:
//   compute --ready--> comm stream: NCCL op --done--> compute
// so the op sees everything the compute stream issued before it, and whatever the compute
// stream issues after it sees the result; the host only enqueues. The async ops take only the
// first fence: the compute stream runs on (the backward) while they run, and wait_all() puts
// the second fence after all of them.
#include <nccl.h>

#include <deque>
#include <exception>
#include <utility>
#include <vector>

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
    for (auto& m : marks_) free_events_.push_back(m.second);
    for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
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
  // In place: NCCL allows sendbuff == recvbuff, and leaves the other ranks' buffers as they were.
  void dev_reduce_sum_async(float* buf, size_t n, int root) override {
    started("ncclReduce",
            [&] { return ncclReduce(buf, buf, n, ncclFloat, ncclSum, root, comm_, stream_); });
  }
  void dev_all_reduce_sum_async(float* buf, size_t n) override {
    started("ncclAllReduce",
            [&] { return ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, comm_, stream_); });
  }
  void dev_wait_all() override {
    recycle_marks(marks_.size());
    unmarked_ = false;
    if (!pending_) return;
    cuda_check(cudaEventRecord(done_, stream_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(compute_, done_, 0), "cudaStreamWaitEvent");
    pending_ = false;
  }
  // A mark is an event recorded on the comm stream after the ops started so far; the stream
  // runs them in order, so waiting for it waits for every op before it and none after.
  size_t dev_mark() override {
    if (!unmarked_) return last_mark_;
    cudaEvent_t e = nullptr;
    if (free_events_.empty()) {
      cuda_check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    } else {
      e = free_events_.back();
      free_events_.pop_back();
    }
    cuda_check(cudaEventRecord(e, stream_), "cudaEventRecord");
    marks_.push_back({++last_mark_, e});
    unmarked_ = false;
    return last_mark_;
  }
  void dev_wait_until(size_t mark) override {
    size_t k = 0;  // marks_[0, k) are at or before `mark`
    while (k < marks_.size() && marks_[k].first <= mark) ++k;
    if (k == 0) return;
    cuda_check(cudaStreamWaitEvent(compute_, marks_[k - 1].second, 0), "cudaStreamWaitEvent");
    recycle_marks(k);
    if (marks_.empty() && !unmarked_) pending_ = false;
  }

 private:
  // The op on the comm stream after the compute stream's work so far; the compute stream does
  // not wait for it.
  template <typename Op>
  void started(const char* what, Op&& op) {
    cuda_check(cudaEventRecord(ready_, compute_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
    nccl_check(op(), what, comm_);
    pending_ = true;
    unmarked_ = true;
  }
  void recycle_marks(size_t k) {
    for (size_t i = 0; i < k; ++i) free_events_.push_back(marks_[i].second);
    marks_.erase(marks_.begin(), marks_.begin() + std::ptrdiff_t(k));
  }
  template <typename Op>
  void fenced(const char* what, Op&& op) {
    started(what, std::forward<Op>(op));
    dev_wait_all();
  }

  cudaStream_t compute_ = nullptr, stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  ncclComm_t comm_ = nullptr;
  bool pending_ = false;   // the comm stream holds work the compute stream has not waited for
  bool unmarked_ = false;  // an op started after the last mark
  size_t last_mark_ = 0;
  std::deque<std::pair<size_t, cudaEvent_t>> marks_;  // not yet waited for, oldest first
  std::vector<cudaEvent_t> free_events_;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_comm(MPI_Comm comm, cudaStream_t compute) {
  return std::make_unique<NcclComm>(comm, compute);
}

}  // namespace autotp
