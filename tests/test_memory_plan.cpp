// Runs under mpirun -np 4. memory_plan's prediction (the model and optimizer built on the sizing
// backend) against what the CPU backend really allocated over training steps, per rank, for
// several TP x DP x ZeRO layouts with and without activation checkpointing; and checkpointing
// changes no number: the losses and gradients with it equal those without, bit for bit, at
// TP 1 and TP 2, with gradient accumulation.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <random>
#include <vector>

#include "config/ds_config.hpp"
#include "dist/topology.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "model/param_layout.hpp"
#include "model/phi3_model.hpp"
#include "mpi_test_util.hpp"
#include "optim/zero_optimizer.hpp"
#include "partition/partition_config.hpp"
#include "train/grad_link.hpp"
#include "train/memory_plan.hpp"

using namespace autotp;

namespace {

struct RunLayout {
  int tp, dp, zero;
  bool ckpt;
};

struct TrainRun {
  std::vector<float> losses, grads;  // rank 0's
  size_t peak = 0, planned = 0;      // this rank's
};

constexpr int kB = 2, kT = 24, kAccum = 2, kSteps = 2;

// Trains kSteps steps of kAccum micro-batches on the first tp*dp ranks.
TrainRun train(const RunLayout& L) {
  TrainRun out;
  test::on_first_ranks(L.tp * L.dp, [&](MPI_Comm sub) {
    auto topo = Topology::create(sub, L.tp, L.dp);
    DsConfig ds = DsConfig::from_file(AUTOTP_SOURCE_DIR "/configs/tiny.json");
    ds.zero_stage = L.zero;
    const ModelConfig mc = ModelConfig::preset("tiny");
    const PartitionPlan plan =
        build_plan(PartitionConfig::from_json(ds.tensor_parallel, ds.source), mc, L.tp);
    const MemoryPlanArgs args =
        memory_plan_args(ds, mc, plan, L.dp, kB, kT, L.ckpt, DeviceSizes::cpu());
    out.planned = plan_rank_memory(args, topo.tp_rank, topo.dp_rank).total();
    {
      CpuBackend be;
      auto tp = make_mpi_comm(topo.tp_comm), dp = make_mpi_comm(topo.dp_comm);
      Phi3Model model(mc, plan, topo.tp_rank, *tp, be, ZeroOptimizer::model_storage(L.zero, L.dp));
      model.set_activation_checkpointing(L.ckpt);
      model.init_random(7);
      ZeroOptimizer opt(ds.optimizer, L.zero, ds.gradient_clipping, model.layout(), model.params(),
                        model.grads(), *dp, *tp, be);
      GradLink link(model, opt, kAccum);
      std::mt19937 gen(100 + topo.dp_rank);
      std::uniform_int_distribution<int32_t> tok(0, int32_t(mc.vocab_size - 1));
      std::vector<int32_t> ids(kB * kT + 1), tgt(kB * kT);
      for (int s = 0; s < kSteps; ++s) {
        float loss = 0;
        for (int m = 0; m < kAccum; ++m) {
          for (auto& x : ids) x = tok(gen);
          std::copy(ids.begin() + 1, ids.end(), tgt.begin());
          link.before_micro_batch(m);
          loss += model.forward_backward(ids.data(), tgt.data(), kB, kT, 1.0f / kAccum);
        }
        out.losses.push_back(loss);
        if (s + 1 == kSteps && !model.grad_buckets()) {  // the last step's gradients, unapplied
          out.grads = model.grad_shard("model.layers.0.self_attn.qkv_proj.weight");
          auto e = model.grad_shard("model.embed_tokens.weight");
          out.grads.insert(out.grads.end(), e.begin(), e.end());
        }
        opt.step(1e-3);
        model.params_changed();
      }
      out.peak = be.peak_bytes();
    }
    topo.free();
  });
  return out;
}

}  // namespace

TEST(MemoryPlan, PredictsTheCpuBackendsPeakForEveryLayout) {
  for (RunLayout L :
       {RunLayout{1, 1, 0, false}, RunLayout{2, 2, 2, false}, RunLayout{1, 4, 1, false},
        RunLayout{2, 1, 0, true}, RunLayout{2, 2, 2, true}, RunLayout{4, 1, 1, false},
        RunLayout{1, 4, 2, false}, RunLayout{1, 4, 2, true}}) {  // the last two: bucketed
    TrainRun r = train(L);
    if (r.peak == 0) continue;  // not in this layout
    // Exact by construction; the issue allows 5%.
    EXPECT_EQ(r.peak, r.planned) << "tp " << L.tp << " dp " << L.dp << " ZeRO-" << L.zero
                                 << (L.ckpt ? " checkpointing" : "");
    EXPECT_NEAR(double(r.peak), double(r.planned), 0.05 * double(r.planned));
  }
}

TEST(MemoryPlan, CheckpointingSavesActivationsOnly) {
  DsConfig ds = DsConfig::from_file(AUTOTP_SOURCE_DIR "/configs/tiny.json");
  const ModelConfig mc = ModelConfig::preset("tiny");
  const PartitionPlan plan =
      build_plan(PartitionConfig::from_json(ds.tensor_parallel, ds.source), mc, 2);
  for (const DeviceSizes& sz : {DeviceSizes::cpu(), DeviceSizes::cuda()}) {
    RankMemory off = plan_memory(memory_plan_args(ds, mc, plan, 2, 8, 128, false, sz));
    RankMemory on = plan_memory(memory_plan_args(ds, mc, plan, 2, 8, 128, true, sz));
    EXPECT_EQ(off.weights, on.weights);
    EXPECT_EQ(off.gradients, on.gradients);
    EXPECT_EQ(off.optimizer, on.optimizer);
    EXPECT_LT(on.activations, off.activations);
    // ZeRO-2 over dp 2 keeps the fp32 master in the optimizer's shard: CUDA's weights are
    // narrow (bf16, in the driver's 2 MiB granules, no second copy); the CPU's stay fp32.
    const size_t n = ParamLayout::from_plan(plan).total;
    if (sz.weight_copy_bytes)
      EXPECT_EQ(off.weights, sz.narrow_buffer_bytes(n)) << sz.device;
    else
      EXPECT_EQ(off.weights, 4 * n) << sz.device;
    // The gradients are bucketed: the own half of the sum plus the buckets (at this size more
    // than the whole buffer; BucketedGradientsShrinkWithDp has the real sizes).
    EXPECT_GT(off.gradients, 4 * (n / 2)) << sz.device;
  }
}

TEST(ActivationCheckpointing, SameLossesAndGradientsBitForBit) {
  for (int tp : {1, 2}) {
    TrainRun plain = train({tp, 1, 0, false});
    TrainRun ckpt = train({tp, 1, 0, true});
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) continue;
    ASSERT_EQ(plain.losses.size(), size_t(kSteps));
    EXPECT_EQ(plain.losses, ckpt.losses) << "tp " << tp;
    ASSERT_EQ(plain.grads.size(), ckpt.grads.size());
    EXPECT_EQ(
        0, std::memcmp(plain.grads.data(), ckpt.grads.data(), plain.grads.size() * sizeof(float)))
        << "tp " << tp;
    EXPECT_GT(plain.losses[0], 1.0f);
    EXPECT_LT(ckpt.peak, plain.peak) << "tp " << tp;
  }
}

// ZeRO-2's gradients at the sizes it is for (Phi-4-mini, 8 and 32 layers, on CUDA): the owner's
// 1/dp shard of the sum, two layer buckets and the tied embedding's, never a whole buffer, so
// that the memory per rank falls with every doubling of DP, below ZeRO-1's (whose gradients
// stay whole); except where that would take more than the whole buffer (8 layers at DP 2,
// where the 614M-element embedding outweighs the layers), which keeps it whole.
TEST(MemoryPlan, BucketedGradientsShrinkWithDp) {
  DsConfig ds = DsConfig::from_file(AUTOTP_SOURCE_DIR "/configs/phi-4-mini.json");
  for (int64_t layers : {8, 32}) {
    ModelConfig mc = ModelConfig::preset("phi-4-mini");
    mc.num_hidden_layers = layers;
    const PartitionPlan plan =
        build_plan(PartitionConfig::from_json(ds.tensor_parallel, ds.source), mc, 1);
    const size_t n = ParamLayout::from_plan(plan).total;
    const int64_t emb = mc.vocab_size * mc.hidden_size, layer = (n - emb - mc.hidden_size) / layers;
    size_t last = 0;
    for (int dp : {2, 4, 8}) {
      ds.zero_stage = 2;
      const RankMemory z2 =
          plan_memory(memory_plan_args(ds, mc, plan, dp, 1, 2048, false, DeviceSizes::cuda()));
      ds.zero_stage = 1;
      const RankMemory z1 =
          plan_memory(memory_plan_args(ds, mc, plan, dp, 1, 2048, false, DeviceSizes::cuda()));
      const std::string what = std::to_string(layers) + " layers, dp " + std::to_string(dp);
      EXPECT_EQ(z1.gradients, 4 * n) << what;
      // shard + embedding + 2 layers, each rounded up by at most 64 elements
      const size_t shard = (n + dp - 1) / dp, buckets = size_t(emb + 2 * layer);
      const bool bucketed = layers == 32 || dp > 2;
      EXPECT_EQ(bucketed, shard + buckets < n) << what;
      EXPECT_EQ(z2.grad_buckets, bucketed) << what;
      EXPECT_FALSE(z1.grad_buckets) << what;
      if (bucketed) {
        EXPECT_GE(z2.gradients, 4 * (shard + buckets)) << what;
        EXPECT_LE(z2.gradients, 4 * (shard + buckets + 3 * 64)) << what;
        EXPECT_LT(z2.total(), z1.total()) << what;
      } else {
        EXPECT_EQ(z2.gradients, 4 * n) << what;
      }
      if (last) {
        EXPECT_LT(z2.total(), last) << what;
      }
      last = z2.total();
    }
  }
}
