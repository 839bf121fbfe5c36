// Runs under mpirun -np 4: the sampler over dp=2 x tp=2 and dp=4 x tp=1 grids.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>

#include "core/error.hpp"
#include "data/sampler.hpp"
#include "data/token_file.hpp"
#include "dist/comm.hpp"
#include "dist/topology.hpp"
#include "test_util.hpp"

using namespace autotp;

namespace {

constexpr int64_t kTokens = 10001, kT = 16;  // (10001 - 1) / 16 = 625 samples
constexpr uint64_t kSeed = 7;

struct Grid {
  int tp, dp;
  int64_t micro, accum;  // micro * accum * dp = 8 in every grid
};

std::vector<int64_t> flat(const std::vector<std::vector<int64_t>>& step) {
  std::vector<int64_t> out;
  for (const auto& m : step) out.insert(out.end(), m.begin(), m.end());
  return out;
}

// Every world rank's ids of this step, indexed [world rank][i].
std::vector<std::vector<int64_t>> gather(const std::vector<int64_t>& mine) {
  auto world = make_mpi_comm(MPI_COMM_WORLD);
  std::vector<float> send(mine.begin(), mine.end()), recv(mine.size() * size_t(world->size()));
  world->all_gather(send.data(), recv.data(), mine.size());  // ids < 2^24 are exact in float
  std::vector<std::vector<int64_t>> out(size_t(world->size()));
  for (int r = 0; r < world->size(); ++r)
    for (size_t i = 0; i < mine.size(); ++i) out[r].push_back(int64_t(recv[r * mine.size() + i]));
  return out;
}

// The global batch as the DP ranks together read it: rank d's j-th sample is position d + j*dp.
std::vector<int64_t> global_batch_of(const std::vector<std::vector<int64_t>>& all, const Grid& g) {
  size_t per_rank = all[0].size();
  std::vector<int64_t> batch(per_rank * size_t(g.dp));
  for (int d = 0; d < g.dp; ++d)
    for (size_t j = 0; j < per_rank; ++j) batch[d + j * g.dp] = all[size_t(d * g.tp)][j];
  return batch;
}

}  // namespace

TEST(Sampler, PermutationIsPinnedAcrossPlatforms) {
  // Reference values from a separate Python implementation of splitmix64 + Fisher-Yates.
  EXPECT_EQ(epoch_permutation(10, 42, 0), (std::vector<int64_t>{2, 3, 9, 7, 5, 8, 6, 4, 0, 1}));
  EXPECT_EQ(epoch_permutation(10, 42, 1), (std::vector<int64_t>{0, 8, 1, 6, 4, 3, 5, 9, 2, 7}));
  EXPECT_EQ(epoch_permutation(12, 0, 0),
            (std::vector<int64_t>{3, 11, 6, 5, 8, 7, 10, 2, 9, 4, 1, 0}));
  auto p = epoch_permutation(1000, 1, 3);
  std::sort(p.begin(), p.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(p[i], i);
}

TEST(Sampler, DpRanksShareOutEachGlobalBatchAndTpRanksAgree) {
  for (Grid g : {Grid{2, 2, 2, 2}, Grid{1, 4, 1, 2}}) {
    auto t = Topology::create(MPI_COMM_WORLD, g.tp, g.dp);
    Sampler s(kTokens, {kT, g.micro, g.accum, g.dp, t.dp_rank, kSeed});
    Sampler ref(kTokens, {kT, 8, 1, 1, 0, kSeed});  // one rank reading whole global batches
    ASSERT_EQ(s.num_samples(), 625);
    ASSERT_EQ(s.steps_per_epoch(), 78);  // 625 = 78 * 8 + 1: the last sample is dropped
    auto tp = make_mpi_comm(t.tp_comm);
    std::set<int64_t> seen;
    for (int64_t step = 0; step < s.steps_per_epoch(); ++step) {
      auto mine = s.next();
      ASSERT_EQ(mine.size(), size_t(g.accum));
      for (const auto& m : mine) ASSERT_EQ(m.size(), size_t(g.micro));
      check_tp_identical(*tp, t.dp_rank, mine);
      auto all = gather(flat(mine));
      for (int r = 0; r < t.world_size; ++r)  // TP ranks of a DP rank read the same samples
        ASSERT_EQ(all[r], all[size_t(r / g.tp * g.tp)]) << "rank " << r << " step " << step;
      ASSERT_EQ(global_batch_of(all, g), flat(ref.next())) << "step " << step;
      for (int64_t id : global_batch_of(all, g)) ASSERT_TRUE(seen.insert(id).second) << id;
    }
    // Disjoint, and together exactly the epoch's first 78 * 8 samples.
    auto perm = epoch_permutation(625, kSeed, 0);
    EXPECT_EQ(seen, std::set<int64_t>(perm.begin(), perm.begin() + 624));
    EXPECT_EQ(s.state().epoch, 1);
    EXPECT_EQ(s.state().position, 0);
    auto next_epoch = epoch_permutation(625, kSeed, 1);
    EXPECT_EQ(s.peek()[0][0], next_epoch[size_t(t.dp_rank)]);
    t.free();
  }
}

TEST(Sampler, ResumingAtAnotherDpNeitherSkipsNorRepeats) {
  Sampler ref(kTokens, {kT, 8, 1, 1, 0, kSeed});
  std::vector<int64_t> expected;  // the global sample sequence of 75 + 6 steps
  for (int i = 0; i < 81; ++i) {
    auto b = flat(ref.next());
    expected.insert(expected.end(), b.begin(), b.end());
  }

  // Run A: dp=2 x tp=2 for 75 steps, then save.
  Grid a{2, 2, 2, 2};
  auto ta = Topology::create(MPI_COMM_WORLD, a.tp, a.dp);
  Sampler sa(kTokens, {kT, a.micro, a.accum, a.dp, ta.dp_rank, kSeed});
  std::vector<int64_t> got;
  for (int i = 0; i < 75; ++i) {
    auto b = global_batch_of(gather(flat(sa.next())), a);
    got.insert(got.end(), b.begin(), b.end());
  }
  nlohmann::json saved = sa.state_json();
  EXPECT_EQ(saved["epoch"], 0);
  EXPECT_EQ(saved["position"], 600);
  ta.free();

  // Run B: dp=4 x tp=1 from the saved state (through its JSON text), 6 steps across the epoch.
  Grid b{1, 4, 1, 2};
  auto tb = Topology::create(MPI_COMM_WORLD, b.tp, b.dp);
  Sampler sb(kTokens, {kT, b.micro, b.accum, b.dp, tb.dp_rank, kSeed});
  sb.restore(nlohmann::json::parse(saved.dump()));
  for (int i = 0; i < 6; ++i) {
    auto batch = global_batch_of(gather(flat(sb.next())), b);
    got.insert(got.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(sb.state().epoch, 1);
  EXPECT_EQ(sb.state().position, 3 * 8);

  // Another global batch (4, not 8): the same sample sequence, cut in fours.
  Sampler sc(kTokens, {kT, 1, 1, 4, tb.dp_rank, kSeed});
  sc.restore(saved);
  std::vector<int64_t> got4;
  for (int i = 0; i < 6; ++i) {  // 600..624 = the rest of epoch 0 in six batches of 4
    auto batch = global_batch_of(gather(flat(sc.next())), Grid{1, 4, 1, 1});
    got4.insert(got4.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(got4, std::vector<int64_t>(expected.begin() + 600, expected.begin() + 624));
  EXPECT_EQ(sc.state().epoch, 1);  // sample 625 (one left, fewer than 4) is dropped
  tb.free();
}

TEST(Sampler, MismatchedTpRanksAreCaught) {
  auto t = Topology::create(MPI_COMM_WORLD, 2, 2);
  auto tp = make_mpi_comm(t.tp_comm);
  // A different seed on each TP rank: every rank of every TP group must see the error.
  Sampler s(kTokens, {kT, 2, 2, 2, t.dp_rank, kSeed + uint64_t(t.tp_rank)});
  std::string m = error_of([&] { check_tp_identical(*tp, t.dp_rank, s.peek()); });
  EXPECT_NE(m.find("the 2 TP ranks of DP rank " + std::to_string(t.dp_rank) +
                   " do not hold the same samples"),
            std::string::npos)
      << m;
  t.free();
}

TEST(Sampler, BadSettingsAreClearErrors) {
  EXPECT_EQ(error_of([] { check_seq_length(8192, 4096); }),
            "seq_length 8192 exceeds the model's max_position_embeddings 4096: use --seq_length "
            "4096 or less");
  check_seq_length(4096, 4096);
  std::string m = error_of([] { Sampler s(100, {kT, 4, 1, 2, 0, 0}); });
  EXPECT_NE(m.find("the corpus has 100 tokens: 6 samples of seq_length 16 + 1, fewer than one "
                   "global batch of 8"),
            std::string::npos)
      << m;
  Sampler s(kTokens, {kT, 2, 2, 2, 0, kSeed});
  nlohmann::json st = s.state_json();
  st["seed"] = 8;
  m = error_of([&] { s.restore(st); });
  EXPECT_NE(m.find("saved with seed 8 but this run has seed 7"), std::string::npos) << m;
  st = s.state_json();
  st["num_samples"] = 600;
  m = error_of([&] { s.restore(st); });
  EXPECT_NE(m.find("saved for a corpus of 600 samples but this token file gives 625"),
            std::string::npos)
      << m;
}

TEST(Sampler, BatchesAreWindowsOfTPlusOneTokens) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string path =
      std::string(AUTOTP_BINARY_DIR) + "/test_sampler_" + std::to_string(rank) + ".tok";
  std::vector<uint32_t> tokens(kTokens);
  for (int64_t i = 0; i < kTokens; ++i) tokens[i] = uint32_t(i % 2048);
  write_token_file(path, tokens, {2048, 1, 0, 0});
  TokenFile f(path);
  std::vector<int64_t> samples = {0, 37, 624};
  std::vector<int32_t> in(samples.size() * kT), tgt(samples.size() * kT);
  fill_batch(f, kT, samples, in.data(), tgt.data());
  for (size_t b = 0; b < samples.size(); ++b)
    for (int64_t k = 0; k < kT; ++k) {
      EXPECT_EQ(in[b * kT + k], int32_t((samples[b] * kT + k) % 2048));
      EXPECT_EQ(tgt[b * kT + k], int32_t((samples[b] * kT + k + 1) % 2048));
    }
  EXPECT_EQ(tgt.back(), int32_t(10000 % 2048));  // the last sample ends on the last token
}
