#include <mpi.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "core/error.hpp"
#include "dist/comm.hpp"

namespace autotp {

namespace {

int count_of(size_t n) {
  check(n <= size_t(INT_MAX), "a single MPI message of ", n,
        " elements exceeds MPI's int count; use a smaller bucket");
  return int(n);
}

// Calls f(offset, count) over [0, n) in pieces that MPI's int count can hold.
template <typename F>
void in_int_pieces(size_t n, F&& f) {
  for (size_t o = 0; o < n; o += size_t(INT_MAX)) f(o, int(std::min(size_t(INT_MAX), n - o)));
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

  void reduce_sum_async(float* buf, size_t n, int root) override {
    if (size_ == 1) return;
    in_int_pieces(n, [&](size_t o, int k) {
      MPI_Ireduce(rank_ == root ? MPI_IN_PLACE : buf + o, buf + o, k, MPI_FLOAT, MPI_SUM, root, c_,
                  next_request());
    });
  }
  void all_reduce_sum_async(float* buf, size_t n) override {
    if (size_ == 1) return;
    in_int_pieces(n, [&](size_t o, int k) {
      MPI_Iallreduce(MPI_IN_PLACE, buf + o, k, MPI_FLOAT, MPI_SUM, c_, next_request());
    });
  }
  void wait_all() override {
    MPI_Waitall(int(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
    done_ += pending_.size();
    pending_.clear();
    polled_ = 0;
  }
  // A mark counts the requests started so far; requests complete in any order, so waiting for
  // a mark waits for each request before it.
  size_t mark() override { return done_ + pending_.size(); }
  void wait_until(size_t mark) override {
    if (mark <= done_) return;
    const size_t k = std::min(mark - done_, pending_.size());
    MPI_Waitall(int(k), pending_.data(), MPI_STATUSES_IGNORE);
    pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(k));
    done_ += k;
    polled_ = polled_ > k ? polled_ - k : 0;
  }

 private:
  // MPI moves nonblocking collectives on only while the program is inside MPI: each start first
  // tests the oldest pending requests, which drives all of them.
  MPI_Request* next_request() {
    for (int done = 1; done && polled_ < pending_.size(); polled_ += size_t(done))
      MPI_Test(&pending_[polled_], &done, MPI_STATUS_IGNORE);
    pending_.push_back(MPI_REQUEST_NULL);
    return &pending_.back();
  }

  MPI_Comm c_;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> pending_;  // started, not yet waited for
  size_t polled_ = 0;                 // pending_[0, polled_) are known complete
  size_t done_ = 0;                   // requests waited for and removed from pending_
};

}  // namespace

std::unique_ptr<Comm> make_mpi_comm(MPI_Comm comm) {
  return std::make_unique<MpiComm>(comm);
}

}  // namespace autotp
