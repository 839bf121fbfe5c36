#pragma once
// Shared by the multi-rank tests that run a layout on part of the world.
#include <mpi.h>

namespace autotp::test {

// f(sub) on the first n ranks of the world, sub their communicator (freed after); the other
// ranks skip f. Every rank must call it (the split is collective).
template <typename F>
void on_first_ranks(int n, F&& f) {
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, rank < n ? 0 : MPI_UNDEFINED, rank, &sub);
  if (sub == MPI_COMM_NULL) return;
  f(sub);
  MPI_Comm_free(&sub);
}

}  // namespace autotp::test
