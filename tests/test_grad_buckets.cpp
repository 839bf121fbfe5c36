// Runs under mpirun -np 4. Bucketed gradients (ZeRO-2 over DP, model/grad_buckets.hpp): the ring
// hands buckets over in order and releases each range before its bucket is written again; and
// training with them gives the losses, gradient norms and parameters of ZeRO-2 over a whole
// gradient buffer (bit for bit where the sums add the same numbers in the same order, else to
// fp32 rounding), tied and untied, with gradient accumulation and activation checkpointing, in
// less memory, exactly the memory the plan predicts.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "config/ds_config.hpp"
#include "dist/topology.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "model/grad_buckets.hpp"
#include "model/phi3_model.hpp"
#include "mpi_test_util.hpp"
#include "optim/zero_optimizer.hpp"
#include "partition/partition_config.hpp"
#include "test_util.hpp"
#include "train/grad_link.hpp"
#include "train/memory_plan.hpp"

using namespace autotp;

namespace {

using Range = std::pair<size_t, size_t>;

TEST(GradBuckets, RingReleasesEachRangeBeforeItsBucketIsReused) {
  CpuBackend be;
  // As Phi3Model builds them: tail, layer 1, layer 0, then a tied embedding with its own bucket.
  GradBuckets b(be, {{90, 100, false}, {50, 90, false}, {10, 50, false}, {0, 10, true}});
  std::vector<Range> released;
  auto rel = [&](size_t lo, size_t n) { released.push_back({lo, n}); };
  EXPECT_EQ(b.group_of(0), 3u);
  EXPECT_EQ(b.group_of(49), 2u);
  EXPECT_EQ(b.group_of(50), 1u);
  EXPECT_EQ(b.group_of(99), 0u);
  EXPECT_THROW(b.group_of(100), Error);
  // Two ring buckets of 40 elements (+ alignment) and the embedding's 10.
  EXPECT_EQ(GradBuckets::numel({{90, 100, false}, {50, 90, false}, {10, 50, false}, {0, 10, true}}),
            2 * (40 + 50 % 64) + 10);

  for (int pass = 0; pass < 3; ++pass) {
    released.clear();
    b.new_pass();
    b.open(3, rel);  // the lm_head's backward: the embedding's last sum must be done
    b.open(0, rel);
    b.open(0, rel);  // opened already: nothing
    b.open(1, rel);
    float* tail = b.at(90);
    b.open(2, rel);  // takes the tail's bucket
    const std::vector<Range> later = {{0, 10}, {50, 40}, {10, 40}, {90, 10}};
    if (pass == 0) {
      EXPECT_EQ(released, (std::vector<Range>{{0, 10}, {90, 10}}));
    } else {
      // Layer 1 and layer 0 of the last pass held the buckets the tail and layer 1 take.
      EXPECT_EQ(released, later) << "pass " << pass;
    }
    EXPECT_THROW(b.at(95), Error) << "the tail's bucket went to layer 0";
    EXPECT_EQ(b.at(10), tail - (90 % 64) + (10 % 64));  // same bucket, its own alignment
    EXPECT_EQ(b.at(49) - b.at(10), 39);
    EXPECT_NE(b.at(50), b.at(10) + 40);  // layer 1 holds the other bucket
    EXPECT_EQ(b.at(9) - b.at(0), 9);
  }
}

struct TrainRun {
  std::vector<float> losses, norms, params;  // rank 0's
  size_t peak = 0, planned = 0;              // this rank's
  bool bucketed = false;
};

constexpr int kB = 2, kT = 16, kSteps = 3;

struct Case {
  int tp, dp;
  bool tied;
  int layers, accum;
  bool ckpt;
  std::string name() const {
    return "tp " + std::to_string(tp) + " x dp " + std::to_string(dp) +
           (tied ? ", tied" : ", untied") + ", " + std::to_string(layers) + " layers, accum " +
           std::to_string(accum) + (ckpt ? ", checkpointing" : "");
  }
};

// ZeRO-2 training on the first tp*dp ranks, the model's gradients bucketed (as the trainer
// builds it) or whole (as before buckets).
TrainRun train(const Case& c, bool buckets) {
  TrainRun out;
  test::on_first_ranks(c.tp * c.dp, [&](MPI_Comm sub) {
    auto topo = Topology::create(sub, c.tp, c.dp);
    DsConfig ds = DsConfig::from_file(AUTOTP_SOURCE_DIR "/configs/tiny.json");
    ds.zero_stage = 2;
    // eps comparable to the gradients: Adam's m / sqrt(v) would otherwise turn the rounding noise
    // of a near-zero gradient into a full step of either sign.
    ds.optimizer.eps = 1e-3;
    ModelConfig mc = ModelConfig::preset("tiny");
    mc.tie_word_embeddings = c.tied;
    mc.num_hidden_layers = c.layers;
    const PartitionPlan plan =
        build_plan(PartitionConfig::from_json(ds.tensor_parallel, ds.source), mc, c.tp);
    out.planned =
        plan_rank_memory(memory_plan_args(ds, mc, plan, c.dp, kB, kT, c.ckpt, DeviceSizes::cpu()),
                         topo.tp_rank, topo.dp_rank)
            .total();
    {
      CpuBackend be;
      auto tp = make_mpi_comm(topo.tp_comm), dp = make_mpi_comm(topo.dp_comm);
      ModelStorage storage = ZeroOptimizer::model_storage(2, c.dp);
      if (!buckets) storage.grad_bucket_dp = 0;
      Phi3Model model(mc, plan, topo.tp_rank, *tp, be, storage);
      out.bucketed = model.grad_buckets();
      model.set_activation_checkpointing(c.ckpt);
      model.init_random(11);
      ZeroOptimizer opt(ds.optimizer, 2, ds.gradient_clipping, model.layout(), model.params(),
                        model.grads(), *dp, *tp, be);
      GradLink link(model, opt, c.accum);
      std::mt19937 gen(200 + topo.dp_rank);
      std::uniform_int_distribution<int32_t> tok(0, int32_t(mc.vocab_size - 1));
      std::vector<int32_t> ids(kB * kT + 1), tgt(kB * kT);
      for (int s = 0; s < kSteps; ++s) {
        float loss = 0;
        for (int m = 0; m < c.accum; ++m) {
          for (auto& x : ids) x = tok(gen);
          std::copy(ids.begin() + 1, ids.end(), tgt.begin());
          link.before_micro_batch(m);
          loss += model.forward_backward(ids.data(), tgt.data(), kB, kT, 1.0f / float(c.accum));
        }
        StepStats st = opt.step(1e-2);
        model.params_changed();
        EXPECT_TRUE(st.applied);
        out.losses.push_back(loss);
        out.norms.push_back(float(st.grad_norm));
      }
      for (const char* p : {"model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight",
                            "model.norm.weight"}) {
        auto v = model.param_shard(p);
        out.params.insert(out.params.end(), v.begin(), v.end());
      }
      out.peak = be.peak_bytes();
    }
    topo.free();
  });
  return out;
}

std::vector<float> rank0s(std::vector<float> v) {
  int n = int(v.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  v.resize(size_t(n));
  MPI_Bcast(v.data(), n, MPI_FLOAT, 0, MPI_COMM_WORLD);
  return v;
}

void expect_close(const std::vector<float>& ref, const std::vector<float>& got, double rel,
                  const std::string& what) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  ASSERT_FALSE(ref.empty()) << what;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(double(got[i]) - double(ref[i]));
    worst = std::max(worst, d / std::max(1e-3, std::fabs(double(ref[i]))));
  }
  EXPECT_LE(worst, rel) << what;
}

TEST(GradBuckets, TrainLikeAWholeGradientBufferInLessMemory) {
  // Each a layout whose buckets plus the shard are smaller than the whole buffer (the model
  // takes buckets only then): tiny's 262k-element tied embedding outweighs its 4 layers at DP 2.
  const Case cases[] = {
      {1, 4, true, 4, 1, false},  {1, 4, true, 4, 2, true},  {2, 2, false, 8, 1, false},
      {2, 2, false, 8, 2, false}, {1, 2, false, 8, 2, true}, {2, 2, true, 12, 1, false},
  };
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  for (const Case& c : cases) {
    const TrainRun whole = train(c, false), bucket = train(c, true);
    if (bucket.peak) {
      EXPECT_TRUE(bucket.bucketed) << c.name();
      EXPECT_FALSE(whole.bucketed) << c.name();
      EXPECT_LT(bucket.peak, whole.peak) << c.name() << ": rank " << rank;
      EXPECT_EQ(bucket.peak, bucket.planned) << c.name() << ": rank " << rank;
    }
    const auto wl = rank0s(whole.losses), bl = rank0s(bucket.losses);
    const auto wn = rank0s(whole.norms), bn = rank0s(bucket.norms);
    const auto wp = rank0s(whole.params), bp = rank0s(bucket.params);
    ASSERT_EQ(wl.size(), size_t(kSteps)) << c.name();
    EXPECT_GT(wl[0], 5.0f) << c.name();  // ln 2048 = 7.6 at the start
    if (c.dp == 2 && c.accum == 1) {
      // a + b in either place: the same sums, bit for bit.
      EXPECT_EQ(wl, bl) << c.name();
      EXPECT_EQ(wn, bn) << c.name();
      EXPECT_EQ(wp, bp) << c.name();
    } else {
      // Micro-batches summed over DP one by one instead of after accumulating: fp32 rounding.
      expect_close(wl, bl, 1e-6, c.name() + ": losses");
      expect_close(wn, bn, 1e-5, c.name() + ": gradient norms");
      expect_close(wp, bp, 1e-4, c.name() + ": parameters");
    }
  }
}

TEST(GradBuckets, NeedAnOptimizerToHandThemTo) {
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm self;
  MPI_Comm_split(MPI_COMM_WORLD, rank, 0, &self);
  {
    CpuBackend be;
    auto tp = make_mpi_comm(self);
    ModelConfig mc = ModelConfig::preset("tiny");
    DsConfig ds = DsConfig::from_file(AUTOTP_SOURCE_DIR "/configs/tiny.json");
    const PartitionPlan plan =
        build_plan(PartitionConfig::from_json(ds.tensor_parallel, ds.source), mc, 1);
    Phi3Model model(mc, plan, 0, *tp, be, ZeroOptimizer::model_storage(2, 8));
    ASSERT_TRUE(model.grad_buckets());
    EXPECT_EQ(model.grads(), nullptr);
    model.init_random(1);
    std::vector<int32_t> ids(9, 3);
    const std::string e =
        error_of([&] { model.forward_backward(ids.data(), ids.data() + 1, 1, 8); });
    EXPECT_NE(e.find("bucketed gradients need set_grads_ready"), std::string::npos) << e;
    const std::string g = error_of([&] { model.grad_shard("model.norm.weight"); });
    EXPECT_NE(g.find("no whole gradient exists"), std::string::npos) << g;
    // An optimizer without a gradient buffer is ZeRO-2 over DP only.
    auto one = make_mpi_comm(self);
    const std::string o = error_of([&] {
      ZeroOptimizer opt(ds.optimizer, 1, 0.0, model.layout(), model.params(), nullptr, *one, *tp,
                        be);
    });
    EXPECT_NE(o.find("bucketed gradients need ZeRO-2 over dp > 1"), std::string::npos) << o;
  }
  MPI_Comm_free(&self);
}

}  // namespace
