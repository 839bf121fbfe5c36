#pragma once
// A Comm that forwards to another and, while enabled, adds up the wall time spent in its
// calls: the "communication" line of autotp-bench's step breakdown. A collective on a GPU stream
// returns before it has run, so timing first drains the work queued before the call and then
// waits for the collective itself (`sync`, e.g. the backend's synchronize()); this serializes
// compute and communication, so it is for profiling steps only; the time includes waiting for
// the slowest rank of the group. Disabled, it costs one branch.
//
// The async ops, timed, complete at once (start, then the inner wait_all): each counts as one
// collective of its full length, as the blocking ones do, and nothing overlaps. Disabled, they
// pass through and overlap as the inner communicator lets them.
#include <functional>
#include <memory>

#include "dist/comm.hpp"

namespace autotp {

class TimedComm final : public Comm {
 public:
  TimedComm(std::unique_ptr<Comm> inner, std::function<void()> sync);
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  void all_reduce_sum(float* buf, size_t n) override;
  void all_reduce_max(float* buf, size_t n) override;
  void all_gather(const float* send, float* recv, size_t count) override;
  void reduce_scatter_sum(const float* send, float* recv, size_t count) override;
  void broadcast(float* buf, size_t n, int root) override;
  void barrier() override;
  void reduce_sum_async(float* buf, size_t n, int root) override;
  void all_reduce_sum_async(float* buf, size_t n) override;
  void wait_all() override { inner_->wait_all(); }
  size_t mark() override { return inner_->mark(); }
  void wait_until(size_t mark) override { inner_->wait_until(mark); }

  void set_enabled(bool on) { enabled_ = on; }
  double seconds() const { return seconds_; }  // total while enabled
  long calls() const { return calls_; }
  void reset() { seconds_ = 0, calls_ = 0; }

 private:
  template <typename F>
  void timed(F&& f);
  template <typename F>
  void timed_async(F&& start);

  std::unique_ptr<Comm> inner_;
  std::function<void()> sync_;
  bool enabled_ = false;
  double seconds_ = 0;
  long calls_ = 0;
};

}  // namespace autotp
