// Runs under mpirun -np 2: the FLOP count against anchors.md's published numbers, the memory
// traffic model's optimizer and cross-entropy terms, the timing Comm, and autotp-bench's step
// end to end (its counts, its loss at initialisation, and TP invariance of what it trains).
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <cmath>

#include "config/model_config.hpp"
#include "dist/comm.hpp"
#include "dist/timed_comm.hpp"
#include "train/bench.hpp"
#include "train/flops.hpp"

using namespace autotp;

namespace {

ModelConfig phi4_mini_8_layers() {
  ModelConfig mc = ModelConfig::preset("phi-4-mini");
  mc.num_hidden_layers = 8;
  return mc;
}

int world_rank() {
  int r;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

}  // namespace

TEST(BenchFlops, MatchAnchorsTable) {
  ModelConfig mc = phi4_mini_8_layers();
  EXPECT_EQ(mc.num_parameters(), 1419955200);  // anchors.md: 1.42 B
  StepFlops f = count_step_flops(mc, 2048, 8192);
  // anchors.md: 50,960 tokens/s = 465 TFLOP/s and 39,015 = 356 (seq 2048); 39,735 = 345 at 512.
  EXPECT_NEAR(f.total * 50960.0 / 8192 / 1e12, 465, 0.5);
  EXPECT_NEAR(f.total * 39015.0 / 8192 / 1e12, 356, 0.5);
  EXPECT_NEAR(count_step_flops(mc, 512, 8192).total * 39735.0 / 8192 / 1e12, 345, 0.5);
  // Every parameter but the norms (2 per layer + the final one) is a GEMM weight, used 3 times.
  const double norms = double(2 * mc.num_hidden_layers + 1) * double(mc.hidden_size);
  EXPECT_DOUBLE_EQ(f.gemm, 6.0 * (double(mc.num_parameters()) - norms) * 8192);
  EXPECT_DOUBLE_EQ(f.total - f.gemm - f.attention, 6.0 * norms * 8192);
}

TEST(BenchFlops, TrafficTerms) {
  ModelConfig mc = ModelConfig::preset("tiny");  // vocab 2048
  StepTraffic t4 = estimate_traffic(mc, 512, 1, 1000, 400, 4);
  StepTraffic t2 = estimate_traffic(mc, 512, 1, 1000, 400, 2);
  EXPECT_DOUBLE_EQ(t4.optimizer, 28.0 * 400 + 10.0 * 1000);
  EXPECT_DOUBLE_EQ(t4.cross_entropy, 512.0 * 2048 * (2 * 4 + 2));  // 2 reads, a bf16 write
  EXPECT_DOUBLE_EQ(t2.optimizer, t4.optimizer);  // fp32 state whatever the activations
  EXPECT_DOUBLE_EQ(2 * t2.activations, t4.activations);
  // TP splits the vocabulary of the logits.
  EXPECT_DOUBLE_EQ(estimate_traffic(mc, 512, 2, 1000, 400, 4).cross_entropy, t4.cross_entropy / 2);
}

TEST(TimedComm, CountsTheWaitInsideCalls) {
  int syncs = 0;
  TimedComm c(make_mpi_comm(MPI_COMM_WORLD), [&] { ++syncs; });
  ASSERT_EQ(c.size(), 2);
  float x = float(world_rank() + 1);
  c.all_reduce_sum(&x, 1);  // disabled: forwarded, not timed
  EXPECT_EQ(x, 3.0f);
  EXPECT_EQ(c.calls(), 0);
  EXPECT_EQ(syncs, 0);
  c.set_enabled(true);
  if (world_rank() == 1) usleep(200000);
  c.all_reduce_sum(&x, 1);
  EXPECT_EQ(x, 6.0f);
  EXPECT_EQ(c.calls(), 1);
  EXPECT_EQ(syncs, 2);  // before (queued compute) and after (the collective itself)
  if (world_rank() == 0) {
    EXPECT_GT(c.seconds(), 0.15);  // it waited for rank 1
  }
  c.reset();
  EXPECT_EQ(c.seconds(), 0.0);
}

TEST(AutotpBench, CountsAndTpInvariance) {
  BenchArgs a;
  a.model = "tiny";
  a.seq_length = 32;
  a.micro_batch = 2;
  a.steps = 2;
  a.warmup = 1;
  a.profile = true;
  a.profile_steps = 1;
  a.device = "cpu";
  // DP 2: two ranks, each its own batch.
  nlohmann::json dp2 = run_bench(a, MPI_COMM_WORLD);
  const ModelConfig mc = ModelConfig::preset("tiny");
  EXPECT_EQ(dp2["tokens_per_step"], 2 * 32 * 2);
  EXPECT_DOUBLE_EQ(dp2["flops_per_step"].get<double>(), count_step_flops(mc, 32, 128).total);
  // Random ids at initialisation: the loss is about ln(vocab).
  EXPECT_NEAR(dp2["loss"].get<double>(), std::log(2048.0), 0.3);
  EXPECT_LE(dp2["step_ms_min"].get<double>(), dp2["step_ms_median"].get<double>());
  EXPECT_LE(dp2["step_ms_median"].get<double>(), dp2["step_ms_max"].get<double>());
  EXPECT_NEAR(dp2["tokens_per_s"].get<double>() * dp2["step_ms"].get<double>() / 1e3, 128, 1e-6);
  // ZeRO-2 over DP 2 communicates every step: reduce-scatter, all-gather, the norm.
  EXPECT_GE(dp2["profile"]["comm_calls"].get<double>(), 3);
  EXPECT_GT(dp2["profile"]["dp_comm_ms"].get<double>(), 0);
  // Every byte the step allocated is in the plan autotp-bench prints (the CPU has no scratch).
  EXPECT_EQ(dp2["unplanned_bytes"].get<long long>(), 0);
  EXPECT_GT(dp2["peak_mem_bytes"].get<double>(), 0);
  EXPECT_EQ(dp2["peak_mem_bytes"].get<double>(), double(dp2["planned_mem"]["total"].get<size_t>()));

  // TP 2 trains the same model on the same ids as TP 1 does (DP rank 0's), so after the same
  // steps the losses agree to rounding.
  a.profile = false;
  a.tp_size = 2;
  nlohmann::json tp2 = run_bench(a, MPI_COMM_WORLD);
  MPI_Comm self;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank(), 0, &self);
  a.tp_size = 1;
  nlohmann::json tp1 = run_bench(a, self);
  MPI_Comm_free(&self);
  EXPECT_EQ(tp2["tokens_per_step"], 64);
  EXPECT_EQ(tp2["unplanned_bytes"].get<long long>(), 0);
  EXPECT_EQ(tp1["unplanned_bytes"].get<long long>(), 0);
  EXPECT_NEAR(tp2["loss"].get<double>(), tp1["loss"].get<double>(), 1e-4);
}
