#include <mpi.h>

#include <climits>

#include "core/error.hpp"
#include "dist/comm.hpp"

namespace autotp {

namespace {

int count_of(size_t n) {
  check(n <= size_t(INT_MAX), "a single MPI message of ", n,
        " elements exceeds MPI's int count; use a smaller bucket");
  return int(n);
}

class MpiComm final : public Comm {
 public:
  explicit MpiComm(MPI_Comm c) : c_(c) {
    MPI_Comm_rank(c_, &rank_);
    MPI_Comm_size(c_, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(float* buf, size_t n) override {
    if (size_ > 1) MPI_Allreduce(MPI_IN_PLACE, buf, count_of(n), MPI_FLOAT, MPI_SUM, c_);
  }
  void all_reduce_max(float* buf, size_t n) override {
    if (size_ > 1) MPI_Allreduce(MPI_IN_PLACE, buf, count_of(n), MPI_FLOAT, MPI_MAX, c_);
  }
  void all_gather(const float* send, float* recv, size_t count) override {
    MPI_Allgather(send, count_of(count), MPI_FLOAT, recv, count_of(count), MPI_FLOAT, c_);
  }
  void reduce_scatter_sum(const float* send, float* recv, size_t count) override {
    MPI_Reduce_scatter_block(send, recv, count_of(count), MPI_FLOAT, MPI_SUM, c_);
  }
  void broadcast(float* buf, size_t n, int root) override {
    if (size_ > 1) MPI_Bcast(buf, count_of(n), MPI_FLOAT, root, c_);
  }
  void barrier() override { MPI_Barrier(c_); }

 private:
  MPI_Comm c_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Comm> make_mpi_comm(MPI_Comm comm) {
  return std::make_unique<MpiComm>(comm);
}

}  // namespace autotp
