#include "dist/topology.hpp"

#include "dist/mpi_main.hpp"

namespace autotp {

Topology Topology::create(MPI_Comm world, int64_t tp, int64_t dp) {
  Topology t;
  t.world = world;
  MPI_Comm_rank(world, &t.world_rank);
  MPI_Comm_size(world, &t.world_size);
  const int64_t ws = t.world_size;
  if (tp <= 0 && dp <= 0) tp = 1;
  if (tp <= 0 && ws % dp == 0) tp = ws / dp;
  if (dp <= 0 && ws % tp == 0) dp = ws / tp;
  if (tp <= 0 || dp <= 0 || tp * dp != ws) {
    throw CollectiveError("world size " + std::to_string(ws) + " is not tp_size " +
                          std::to_string(tp) + " x dp_size " + std::to_string(dp) +
                          ": launch with mpirun -np " +
                          std::to_string(tp > 0 && dp > 0 ? tp * dp : ws) +
                          ", or set --tp_size/--dp_size (or autotp_size/data_parallel_size in "
                          "the ds_config) so that their product is the number of ranks");
  }
  t.tp = int(tp);
  t.dp = int(dp);
  t.tp_rank = t.world_rank % t.tp;
  t.dp_rank = t.world_rank / t.tp;
  MPI_Comm_split(world, t.dp_rank, t.tp_rank, &t.tp_comm);  // same dp_rank = one TP group
  MPI_Comm_split(world, t.tp_rank, t.dp_rank, &t.dp_comm);  // same tp_rank = one DP group
  MPI_Comm node;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, t.world_rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &t.local_rank);
  MPI_Comm_size(node, &t.local_size);
  MPI_Comm_free(&node);
  return t;
}

void Topology::free() {
  if (tp_comm != MPI_COMM_NULL) MPI_Comm_free(&tp_comm);
  if (dp_comm != MPI_COMM_NULL) MPI_Comm_free(&dp_comm);
}

}  // namespace autotp
