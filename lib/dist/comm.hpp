#pragma once
// The collectives the parallel layers and the optimizer use, over one group (TP or DP).
// A Comm is paired with a Backend: it takes buffers in that backend's memory, and also plain
// host memory (the optimizer's and the trainer's scalars). make_mpi_comm is the host-memory
// one; the CUDA build adds device-buffer communicators (NCCL, or MPI staged through host
// memory) behind the same interface.
#include <mpi.h>

#include <cstddef>
#include <memory>

namespace autotp {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: buf = sum over ranks of buf.
  virtual void all_reduce_sum(float* buf, size_t n) = 0;
  virtual void all_reduce_max(float* buf, size_t n) = 0;
  // recv[size * count] = concatenation of every rank's send[count], in rank order.
  virtual void all_gather(const float* send, float* recv, size_t count) = 0;
  // recv[count] = sum over ranks of send[rank * count .. rank * count + count).
  virtual void reduce_scatter_sum(const float* send, float* recv, size_t count) = 0;
  virtual void broadcast(float* buf, size_t n, int root) = 0;
  virtual void barrier() = 0;

  // Nonblocking sums, for the optimizer to reduce gradients over DP while the backward goes
  // on. Each starts now and completes at the next wait_all(); until then the caller must not
  // touch buf. Every rank starts the same ops in the same order. These defaults are
  // synchronous (complete on return); communicators that can overlap override them.
  // reduce: root's buf = sum over ranks of buf; the other ranks' buf is unspecified.
  virtual void reduce_sum_async(float* buf, size_t n, int root) {
    (void)root;
    all_reduce_sum(buf, n);
  }
  virtual void all_reduce_sum_async(float* buf, size_t n) { all_reduce_sum(buf, n); }
  // Completes every async op started on this communicator. On a GPU stream "complete" means:
  // work issued on the compute stream after wait_all() sees the results (the host may return
  // at once).
  virtual void wait_all() {}
  // A point in the sequence of async ops: wait_until(mark()) completes every async op started
  // before that mark() and none after it, so that a buffer whose sum is done can be reused
  // while later sums still run (the optimizer's gradient buckets). Marks grow; 0 is "before any
  // op". These defaults complete everything.
  virtual size_t mark() { return 0; }
  virtual void wait_until(size_t mark) {
    (void)mark;
    wait_all();
  }
};

// A communicator over an MPI group (not owned).
std::unique_ptr<Comm> make_mpi_comm(MPI_Comm comm);

}  // namespace autotp
