#pragma once
// TP x DP process grid over MPI_COMM_WORLD (Megatron / DeepSpeed layout): TP groups are
// consecutive world ranks [k*tp, k*tp + tp); DP groups are strided {t, t+tp, t+2tp, ...}.
// tp_rank = rank % tp, dp_rank = rank / tp.
#include <mpi.h>

#include <cstdint>

namespace autotp {

struct Topology {
  int world_rank = 0, world_size = 1;
  int tp = 1, dp = 1, tp_rank = 0, dp_rank = 0;
  int local_rank = 0, local_size = 1;  // within the node: picks the GPU
  MPI_Comm world = MPI_COMM_WORLD, tp_comm = MPI_COMM_NULL, dp_comm = MPI_COMM_NULL;

  // Collective over `world`. tp or dp may be 0 (= infer from the world size). Throws
  // CollectiveError when tp x dp != world size: every rank knows it, rank 0 says it.
  static Topology create(MPI_Comm world, int64_t tp, int64_t dp);
  void free();
};

}  // namespace autotp
