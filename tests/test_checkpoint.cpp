// Runs under mpirun -np 4. Checkpoints of the tiny model on the CPU backend: a resumed run gives
// the same losses bit for bit as one that never stopped (every ZeRO stage), a checkpoint loads
// at another TP x DP (and ZeRO stage) and goes on as the uninterrupted run does, resharding
// keeps every tensor exactly, and the weight files agree with the master weights.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <string>

#include "checkpoint/checkpoint_reader.hpp"
#include "checkpoint/reshard.hpp"
#include "data/sampler.hpp"
#include "test_util.hpp"
#include "train/trainer.hpp"

using namespace autotp;
namespace fs = std::filesystem;

namespace {

const std::string kWork = std::string(AUTOTP_BINARY_DIR) + "/checkpoint_test";

int world_rank() {
  int r;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// A fresh directory, made by rank 0 while the others wait.
std::string fresh_dir(const std::string& name) {
  const std::string d = kWork + "/" + name;
  if (world_rank() == 0) {
    fs::remove_all(d);
    fs::create_directories(d);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return d;
}

struct RunSpec {
  int tp = 2, dp = 2, zero = 2;
  int64_t steps = 6;
  std::string save_dir, load;
  bool resume = false;
  int64_t save_interval = 0;
};

// Trains on the first tp*dp ranks; every world rank returns rank 0's losses of the steps run.
std::vector<double> train(const RunSpec& r, const std::string& out) {
  const int n = r.tp * r.dp;
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() < n ? 0 : MPI_UNDEFINED, world_rank(), &sub);
  std::vector<double> losses;
  if (sub != MPI_COMM_NULL) {
    TrainArgs a;
    a.ds_config = std::string(AUTOTP_SOURCE_DIR) + "/configs/tiny.json";
    a.tokenizer = TrainArgs::share_dir() + "/tokenizer/tokenizer.json";
    a.data = TrainArgs::share_dir() + "/corpus/kjv.txt";
    a.out_dir = out;
    a.tp_size = r.tp;
    a.dp_size = r.dp;
    a.seq_length = 32;
    a.num_steps = r.steps;
    a.micro_batch = 2;
    a.grad_accum = 4 / r.dp;  // global batch 8 at DP 1, 2 and 4
    a.zero_stage = r.zero;
    a.log_interval = 1000;
    a.save_dir = r.save_dir;
    a.save_interval = r.save_interval;
    a.resume = r.resume;
    a.load = r.load;
    losses = run_training(a, sub).losses;
    MPI_Comm_free(&sub);
  }
  int count = int(losses.size());
  MPI_Bcast(&count, 1, MPI_INT, 0, MPI_COMM_WORLD);
  losses.resize(size_t(count));
  MPI_Bcast(losses.data(), count, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return losses;
}

// The full tensors of a checkpoint, parameter by parameter: weights, master, m, v.
std::vector<std::vector<float>> full_tensors(const std::string& dir) {
  CheckpointReader rd(Manifest::read(dir));
  PartitionPlan whole = rd.manifest().plan;
  whole.tp = 1;
  for (auto& s : whole.params) s.tp = 1, s.split_dim = -1, s.parts = {s.shape[0]};
  const ParamLayout l = ParamLayout::from_plan(whole);
  std::vector<std::vector<float>> out;
  for (auto& slot : l.slots) {
    out.push_back(rd.full_weight(slot.name));
    for (OptState s : {OptState::Master, OptState::ExpAvg, OptState::ExpAvgSq}) {
      std::vector<float> v(slot.numel);
      rd.read_state(l, 0, s, slot.offset, slot.offset + slot.numel, v.data());
      out.push_back(v);
    }
  }
  return out;
}

}  // namespace

TEST(Checkpoint, ResumeIsBitExactAtEveryZeroStage) {
  for (int zero : {0, 1, 2}) {
    const std::string z = "z" + std::to_string(zero);
    const std::string dir = fresh_dir("exact_" + z);
    RunSpec whole{2, 2, zero, 6};
    auto ref = train(whole, dir + "/whole");
    RunSpec first{2, 2, zero, 3, dir + "/ckpt"};
    auto a = train(first, dir + "/part");
    RunSpec second = first;
    second.steps = 6;
    second.resume = true;
    auto b = train(second, dir + "/part");
    ASSERT_EQ(ref.size(), 6u);
    ASSERT_EQ(a.size(), 3u) << z;
    ASSERT_EQ(b.size(), 3u) << z;
    a.insert(a.end(), b.begin(), b.end());
    for (size_t i = 0; i < 6; ++i)
      EXPECT_EQ(a[i], ref[i]) << "ZeRO-" << zero << " step " << i + 1 << ": resumed " << a[i]
                              << " vs uninterrupted " << ref[i];
    EXPECT_LT(ref.back(), ref.front());  // the run learns, so the comparison means something
  }
}

TEST(Checkpoint, ResumesAtAnotherTopologyAndStage) {
  const std::string dir = fresh_dir("elastic");
  auto ref = train(RunSpec{2, 2, 2, 6}, dir + "/whole");
  train(RunSpec{2, 2, 2, 3, dir + "/ckpt"}, dir + "/part");
  for (auto [tp, dp, zero] : {std::tuple{4, 1, 2}, {1, 4, 1}, {1, 2, 0}, {2, 1, 2}}) {
    const std::string name = "tp" + std::to_string(tp) + "dp" + std::to_string(dp);
    auto b = train(RunSpec{tp, dp, zero, 6, "", dir + "/ckpt/3"}, dir + "/" + name);
    ASSERT_EQ(b.size(), 3u) << name;
    for (size_t i = 0; i < 3; ++i)
      EXPECT_LE(std::fabs(b[i] - ref[3 + i]), 1e-5 * std::fabs(ref[3 + i]))
          << name << " ZeRO-" << zero << " step " << i + 4 << ": " << b[i] << " vs " << ref[3 + i];
  }
}

TEST(Checkpoint, ReshardKeepsEveryTensorAndWeightsMatchMaster) {
  const std::string dir = fresh_dir("reshard");
  train(RunSpec{2, 2, 2, 2, dir + "/a"}, dir + "/run");
  if (world_rank() == 0) {
    auto ref = full_tensors(dir + "/a/2");
    // Weights files hold what the master weights say, bit for bit.
    for (size_t i = 0; i < ref.size(); i += 4) EXPECT_EQ(ref[i], ref[i + 1]) << "tensor " << i / 4;
    std::string src = dir + "/a";
    int k = 0;
    for (auto [tp, dp] : {std::pair{4, 1}, {1, 3}, {2, 3}, {1, 1}}) {
      const std::string dst = dir + "/r" + std::to_string(k++);
      EXPECT_EQ(reshard_checkpoint(src, dst, tp, dp), dst + "/2");
      Manifest m = Manifest::read(dst + "/2");
      EXPECT_EQ(m.tp, tp);
      EXPECT_EQ(m.dp, dp);
      EXPECT_EQ(full_tensors(dst + "/2"), ref) << "TP " << tp << " x DP " << dp;
      src = dst;
    }
    auto err = error_of([&] { reshard_checkpoint(src, dir + "/r8", 8, 1); });
    EXPECT_TRUE(has(err, "tp_size 8") && has(err, "KV heads")) << err;
    EXPECT_FALSE(fs::exists(dir + "/r8/2"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// The sampler's position counts global samples: a run saved at DP 2 and resumed at DP 3 reads
// every sample of the epoch once, in the order the permutation gives.
TEST(Checkpoint, SamplerResumedAtAnotherDpSkipsAndRepeatsNothing) {
  const int64_t tokens = 32 * 120 + 1;  // 120 samples of 32 tokens
  auto ids_of = [&](int dp, const nlohmann::json* state, int steps, nlohmann::json* out) {
    std::vector<Sampler> s;
    for (int d = 0; d < dp; ++d) {
      SamplerConfig c;
      c.seq_length = 32, c.micro_batch = 2, c.grad_accum = 1, c.dp = dp, c.dp_rank = d;
      c.seed = 7;
      s.emplace_back(tokens, c);
      if (state) s.back().restore(*state);
    }
    std::vector<int64_t> ids;
    for (int k = 0; k < steps; ++k) {
      std::vector<std::vector<int64_t>> per(static_cast<size_t>(dp));
      for (int d = 0; d < dp; ++d) per[size_t(d)] = s[size_t(d)].next()[0];
      for (int b = 0; b < 2; ++b)  // position order: sample j of rank d is at d + j*dp
        for (int d = 0; d < dp; ++d) ids.push_back(per[size_t(d)][size_t(b)]);
    }
    if (out) *out = s[0].state_json();
    return ids;
  };
  nlohmann::json saved;
  auto a = ids_of(2, nullptr, 5, &saved);  // 20 samples
  auto b = ids_of(3, &saved, 6, nullptr);  // 36 more
  a.insert(a.end(), b.begin(), b.end());
  auto perm = epoch_permutation(120, 7, 0);
  ASSERT_EQ(a.size(), 56u);
  EXPECT_EQ(a, std::vector<int64_t>(perm.begin(), perm.begin() + 56));
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), a.size());
}
