// Runs under mpirun -np 4.
#include <gtest/gtest.h>

#include "dist/comm.hpp"
#include "dist/mpi_main.hpp"
#include "dist/topology.hpp"

using namespace autotp;

TEST(Topology, TpIsConsecutiveDpIsStrided) {
  for (auto [tp, dp] : {std::pair{2, 2}, {4, 1}, {1, 4}}) {
    auto t = Topology::create(MPI_COMM_WORLD, tp, dp);
    ASSERT_EQ(t.world_size, 4);
    EXPECT_EQ(t.tp_rank, t.world_rank % tp);
    EXPECT_EQ(t.dp_rank, t.world_rank / tp);
    // The TP group holds consecutive ranks: gather world ranks over it.
    auto tpc = make_mpi_comm(t.tp_comm);
    std::vector<float> members(tp);
    float me = float(t.world_rank);
    tpc->all_gather(&me, members.data(), 1);
    for (int i = 0; i < tp; ++i) EXPECT_EQ(members[i], float(t.dp_rank * tp + i));
    auto dpc = make_mpi_comm(t.dp_comm);
    std::vector<float> dmembers(dp);
    dpc->all_gather(&me, dmembers.data(), 1);
    for (int i = 0; i < dp; ++i) EXPECT_EQ(dmembers[i], float(t.tp_rank + i * tp));
    t.free();
  }
}

TEST(Topology, InfersTheMissingSize) {
  auto t = Topology::create(MPI_COMM_WORLD, 2, 0);
  EXPECT_EQ(t.dp, 2);
  t.free();
}

TEST(Topology, WrongWorldSizeIsOneClearError) {
  try {
    Topology::create(MPI_COMM_WORLD, 2, 3);
    FAIL() << "expected an error";
  } catch (const CollectiveError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("world size 4 is not tp_size 2 x dp_size 3"), std::string::npos) << m;
    EXPECT_NE(m.find("mpirun -np 6"), std::string::npos) << m;
  }
  EXPECT_THROW(Topology::create(MPI_COMM_WORLD, 3, 0), CollectiveError);
}

TEST(Comm, CollectivesComputeTheirSums) {
  auto c = make_mpi_comm(MPI_COMM_WORLD);
  int r = c->rank(), n = c->size();
  std::vector<float> v = {float(r), 1.0f};
  c->all_reduce_sum(v.data(), 2);
  EXPECT_EQ(v[0], float(n * (n - 1) / 2));
  EXPECT_EQ(v[1], float(n));
  std::vector<float> send(n * 2), recv(2);
  for (int i = 0; i < n * 2; ++i) send[i] = float(i + r);
  c->reduce_scatter_sum(send.data(), recv.data(), 2);
  for (int k = 0; k < 2; ++k) EXPECT_EQ(recv[k], float(n * (2 * r + k) + n * (n - 1) / 2));
}
