#pragma once
// A communicator that knows its size and rank and nothing else: for building one rank's model
// and optimizer on the sizing backend (train/memory_plan.hpp), whose constructors only ask
// for size() and rank(). Any collective is a bug there and throws.
#include "core/error.hpp"
#include "dist/comm.hpp"

namespace autotp {

class SizeOnlyComm final : public Comm {
 public:
  SizeOnlyComm(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(float*, size_t) override { none("all_reduce_sum"); }
  void all_reduce_max(float*, size_t) override { none("all_reduce_max"); }
  void all_gather(const float*, float*, size_t) override { none("all_gather"); }
  void reduce_scatter_sum(const float*, float*, size_t) override { none("reduce_scatter_sum"); }
  void broadcast(float*, size_t, int) override { none("broadcast"); }
  void barrier() override { none("barrier"); }

 private:
  [[noreturn]] static void none(const char* op) {
    fail("size-only communicator: ", op, " was called, but it has no ranks to talk to");
  }
  int rank_, size_;
};

}  // namespace autotp
