// Runs under mpirun -np 4: the same model and data at every TP x DP layout that fits in 4 ranks
// must give the same losses (the layouts only change how the arithmetic is split), ZeRO-2 must
// equal ZeRO-0, and DP=2 must equal DP=1 with twice the micro-batches.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <string>

#include "mpi_test_util.hpp"
#include "train/trainer.hpp"

using namespace autotp;

namespace {

constexpr int kSteps = 10;

// Trains on the first tp*dp ranks of the world; every world rank returns rank 0's losses.
std::vector<double> train(int tp, int dp, int zero_stage) {
  std::vector<double> losses(kSteps, 0.0);
  test::on_first_ranks(tp * dp, [&](MPI_Comm sub) {
    TrainArgs a;
    a.ds_config = std::string(AUTOTP_SOURCE_DIR) + "/configs/tiny.json";
    a.tokenizer = TrainArgs::share_dir() + "/tokenizer/tokenizer.json";
    a.data = TrainArgs::share_dir() + "/corpus/kjv.txt";
    a.out_dir = std::string(AUTOTP_BINARY_DIR) + "/invariance/tp" + std::to_string(tp) + "dp" +
                std::to_string(dp) + "z" + std::to_string(zero_stage);
    a.tp_size = tp;
    a.dp_size = dp;
    a.seq_length = 32;
    a.num_steps = kSteps;
    a.micro_batch = 2;
    a.grad_accum = 4 / dp;  // global batch 8 samples at every DP size
    a.zero_stage = zero_stage;
    a.log_interval = 1000;
    losses = run_training(a, sub).losses;
  });
  MPI_Bcast(losses.data(), kSteps, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return losses;
}

void expect_same(const std::vector<double>& ref, const std::vector<double>& got,
                 const std::string& what) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_LE(std::fabs(got[i] - ref[i]), 1e-5 * std::fabs(ref[i]))
        << what << " step " << i + 1 << ": " << got[i] << " vs " << ref[i];
}

}  // namespace

TEST(TrainInvariance, LossesDoNotDependOnTopologyOrZeroStage) {
  auto ref = train(1, 1, 2);
  // The run learns: the loss after 10 steps is well below the first (ln 2048 = 7.62).
  EXPECT_NEAR(ref.front(), std::log(2048.0), 0.1);
  EXPECT_LT(ref.back(), ref.front() - 0.5);
  for (auto [tp, dp] : {std::pair{2, 1}, {4, 1}, {1, 2}, {2, 2}, {1, 4}})
    expect_same(ref, train(tp, dp, 2),
                "tp " + std::to_string(tp) + " x dp " + std::to_string(dp) + " ZeRO-2");
  expect_same(ref, train(2, 2, 0), "tp 2 x dp 2 ZeRO-0");
  expect_same(ref, train(2, 2, 1), "tp 2 x dp 2 ZeRO-1");
}
