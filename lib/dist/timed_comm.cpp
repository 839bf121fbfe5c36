#include "dist/timed_comm.hpp"

#include <chrono>

namespace autotp {

TimedComm::TimedComm(std::unique_ptr<Comm> inner, std::function<void()> sync)
    : inner_(std::move(inner)), sync_(std::move(sync)) {}

template <typename F>
void TimedComm::timed(F&& f) {
  if (!enabled_ || inner_->size() == 1) return f();  // a group of one communicates nothing
  if (sync_) sync_();  // the compute queued before the call is not communication
  auto t0 = std::chrono::steady_clock::now();
  f();
  if (sync_) sync_();
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++calls_;
}

void TimedComm::all_reduce_sum(float* buf, size_t n) {
  timed([&] { inner_->all_reduce_sum(buf, n); });
}
void TimedComm::all_reduce_max(float* buf, size_t n) {
  timed([&] { inner_->all_reduce_max(buf, n); });
}
void TimedComm::all_gather(const float* send, float* recv, size_t count) {
  timed([&] { inner_->all_gather(send, recv, count); });
}
void TimedComm::reduce_scatter_sum(const float* send, float* recv, size_t count) {
  timed([&] { inner_->reduce_scatter_sum(send, recv, count); });
}
void TimedComm::broadcast(float* buf, size_t n, int root) {
  timed([&] { inner_->broadcast(buf, n, root); });
}
void TimedComm::barrier() {
  timed([&] { inner_->barrier(); });
}

// Timed, an async op completes before the clock stops.
template <typename F>
void TimedComm::timed_async(F&& start) {
  if (!enabled_) return start();
  timed([&] {
    start();
    inner_->wait_all();
  });
}

void TimedComm::reduce_sum_async(float* buf, size_t n, int root) {
  timed_async([&] { inner_->reduce_sum_async(buf, n, root); });
}
void TimedComm::all_reduce_sum_async(float* buf, size_t n) {
  timed_async([&] { inner_->all_reduce_sum_async(buf, n); });
}

}  // namespace autotp
