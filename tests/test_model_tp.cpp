// "Whatever the plan says, the model computes the same function": the tiny model at tp = 1, 2
// and 4 under many plans gives the tp = 1 loss, logits and (gathered) gradients. Run with 4
// ranks: MPI_COMM_WORLD is split into groups of tp consecutive ranks (for tp < 4 the groups
// are duplicates). Also checks that init_random gives the same full model at every tp and
// that replicated parameters get bitwise identical gradients on every TP rank.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <random>

#include "core/error.hpp"
#include "io/model_file.hpp"
#include "model/phi3_model.hpp"
#include "model_test_util.hpp"
#include "partition/partition_config.hpp"

namespace autotp {
namespace {

using test::rel_err;
using test::Split;

struct Result {
  std::string describe;
  float loss = 0;
  std::vector<float> logits;
  std::map<std::string, std::vector<float>> params, grads;  // full tensors
};

struct Batch {
  int B = 2, T = 6;
  std::vector<int32_t> ids, targets;
};

Batch make_batch(int64_t vocab) {
  Batch b;
  std::mt19937 rng(17);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(vocab) - 1);
  for (int i = 0; i < b.B * b.T; ++i) b.ids.push_back(tok(rng));
  b.ids[3] = 1;  // padding token
  for (int s = 0; s < b.B; ++s)
    for (int t = 0; t < b.T; ++t)
      b.targets.push_back(t + 1 < b.T ? b.ids[s * b.T + t + 1] : Phi3Model::kIgnoreIndex);
  b.targets[7] = Phi3Model::kIgnoreIndex;
  return b;
}

// All ranks of `group` pass their local shard; returns the full tensor.
std::vector<float> gather_full(const ShardSpec& spec, const std::vector<float>& local,
                               MPI_Comm group, bool* replicas_equal) {
  int tp = 1;
  MPI_Comm_size(group, &tp);
  std::vector<float> all(local.size() * size_t(tp));
  MPI_Allgather(local.data(), int(local.size()), MPI_FLOAT, all.data(), int(local.size()),
                MPI_FLOAT, group);
  if (spec.replicated()) {
    for (size_t i = 0; i < all.size(); ++i)
      if (all[i] != local[i % local.size()]) *replicas_equal = false;
    return local;
  }
  std::vector<float> full(size_t(spec.global_numel()));
  for (int r = 0; r < tp; ++r)
    insert_shard(spec, r, all.data() + size_t(r) * local.size(), full.data(), sizeof(float));
  return full;
}

// chunk_rows: Phi3Model::set_logits_chunk_rows (0: the default, one chunk for the tiny model).
// fused: one forward_backward() instead of forward(), gather_logits(), backward() (no logits).
Result run(const ModelConfig& cfg, const PartitionPlan& plan, MPI_Comm group, bool* replicas_equal,
           int64_t chunk_rows = 0, bool fused = false) {
  auto be = make_cpu_backend();
  auto comm = make_mpi_comm(group);
  Phi3Model m(cfg, plan, comm->rank(), *comm, *be);
  m.set_logits_chunk_rows(chunk_rows);
  m.init_random(2024);
  Batch b = make_batch(cfg.vocab_size);
  Result res;
  res.describe = m.describe();
  m.zero_grad();
  if (fused) {
    res.loss = m.forward_backward(b.ids.data(), b.targets.data(), b.B, b.T, 1.0f);
  } else {
    res.loss = m.forward(b.ids.data(), b.targets.data(), b.B, b.T);
    res.logits = m.gather_logits();
    m.backward(1.0f);
  }
  for (auto& slot : m.layout().slots) {
    res.params[slot.name] =
        gather_full(*slot.spec, m.param_shard(slot.name), group, replicas_equal);
    res.grads[slot.name] = gather_full(*slot.spec, m.grad_shard(slot.name), group, replicas_equal);
  }
  return res;
}

// ---- plans: built by build_plan from a ds_config block, or by hand for what it rejects ----

nlohmann::json spec(const std::string& pattern, const std::string& type,
                    nlohmann::json shape = nullptr) {
  nlohmann::json s = {{"patterns", {pattern}}, {"partition_type", type}};
  if (!shape.is_null()) s["shape"] = shape;
  return s;
}

// The phi3 preset with the GQA-correct qkv shape, as a user writes it in ds_config.json.
PartitionPlan phi3_plan(const ModelConfig& c, int64_t tp, bool vocab_parallel, bool embed_hidden) {
  nlohmann::json specs = {spec(".*\\.self_attn\\.qkv_proj\\.weight$", "column",
                               {{c.q_rows(), c.kv_rows(), c.kv_rows()}, -1}),
                          spec(".*\\.self_attn\\.o_proj\\.weight$", "row"),
                          spec(".*\\.mlp\\.gate_up_proj\\.weight$", "column", {2, -1}),
                          spec(".*\\.mlp\\.down_proj\\.weight$", "row")};
  if (embed_hidden) specs.push_back(spec(".*\\.embed_tokens\\.weight$", "column"));
  nlohmann::json tpj = {
      {"autotp_size", tp},
      {"partition_config",
       {{"use_default_specs", false}, {"vocab_parallel", vocab_parallel}, {"layer_specs", specs}}}};
  return build_plan(PartitionConfig::from_json(tpj, "test ds_config"), c, tp);
}

using Rule = std::function<Split(const std::string&, const std::vector<int64_t>&)>;

// qkv column on whole heads, o_proj replicated; gate_up replicated, down row; embedding split
// along hidden and lm_head row (tied: the embedding's split makes it row-parallel too).
Split mixed(const ModelConfig& c, const std::string& n, const std::vector<int64_t>&) {
  if (test::ends_with(n, "qkv_proj.weight")) return {0, {c.q_rows(), c.kv_rows(), c.kv_rows()}};
  if (test::ends_with(n, "down_proj.weight")) return {1, {c.intermediate_size}};
  if (n == "lm_head.weight" || n == "model.embed_tokens.weight") return {1, {c.hidden_size}};
  return {};
}

// Splits that cut across heads and across the gate/up pairing (qkv and gate_up column-split
// as one part), with o_proj and down row-split: the model must gather where the consumer
// cannot work on such shards. The vocabulary split in two parts too.
Split awkward(const ModelConfig& c, const std::string& n, const std::vector<int64_t>& shape) {
  if (test::ends_with(n, "qkv_proj.weight") || test::ends_with(n, "gate_up_proj.weight"))
    return {0, {shape[0]}};
  if (test::ends_with(n, "o_proj.weight")) return {1, {c.q_rows()}};
  if (test::ends_with(n, "down_proj.weight")) return {1, {c.intermediate_size}};
  if (n == "model.embed_tokens.weight" || n == "lm_head.weight")
    return {0, {c.vocab_size / 2, c.vocab_size / 2}};
  return {};
}

// The phi3 rules on layer 0 only; layer 1 and the rest replicated (layers may differ).
Split first_layer(const ModelConfig& c, const std::string& n, const std::vector<int64_t>&) {
  if (n.rfind("model.layers.0.", 0) != 0) return {};
  if (test::ends_with(n, "qkv_proj.weight")) return {0, {c.q_rows(), c.kv_rows(), c.kv_rows()}};
  if (test::ends_with(n, "gate_up_proj.weight"))
    return {0, {c.intermediate_size, c.intermediate_size}};
  if (test::ends_with(n, "o_proj.weight")) return {1, {c.q_rows()}};
  if (test::ends_with(n, "down_proj.weight")) return {1, {c.intermediate_size}};
  return {};
}

struct PlanCase {
  std::string name;
  std::function<PartitionPlan(const ModelConfig&, int64_t)> make;
  std::vector<std::string> expect;  // lines Phi3Model::describe() must contain when tp > 1
};

std::vector<PlanCase> plan_cases() {
  return {
      {"phi3",
       [](auto& c, int64_t tp) { return phi3_plan(c, tp, false, false); },
       {"embedding: replicated", "attention on local heads", "MLP on local columns",
        "; qkv_proj column-parallel, o_proj row-parallel, gate_up_proj column-parallel, "
        "down_proj row-parallel",
        "replicated, full cross-entropy"}},
      {"phi3+vocab_parallel",
       [](auto& c, int64_t tp) { return phi3_plan(c, tp, true, false); },
       {"embedding: vocab-parallel", "column-parallel, vocab-parallel cross-entropy"}},
      {"phi3+embed_hidden",
       [](auto& c, int64_t tp) { return phi3_plan(c, tp, false, true); },
       {"embedding: split along hidden"}},
      {"replicated",
       [](auto& c, int64_t tp) { return test::replicated_plan(c, tp); },
       {"attention on all heads, MLP on all columns; qkv_proj replicated"}},
      {"mixed",
       [](auto& c, int64_t tp) {
         return test::hand_plan(c, tp, [&](auto& n, auto& s) { return mixed(c, n, s); });
       },
       {"attention on local heads", "MLP on all columns", "o_proj replicated",
        "down_proj row-parallel", "row-parallel, full cross-entropy"}},
      {"awkward",
       [](auto& c, int64_t tp) {
         return test::hand_plan(c, tp, [&](auto& n, auto& s) { return awkward(c, n, s); });
       },
       {"attention on all heads, MLP on all columns; qkv_proj column-parallel",
        "vocab-parallel (rows", "column-parallel, vocab-parallel cross-entropy"}},
      {"first_layer",
       [](auto& c, int64_t tp) {
         return test::hand_plan(c, tp, [&](auto& n, auto& s) { return first_layer(c, n, s); });
       },
       {"layer 0: attention on local heads", "layer 1: attention on all heads"}},
  };
}

void check_all_tp(bool tied) {
  int world = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  ASSERT_EQ(world, 4) << "run under mpirun -np 4";
  // 8 query / 4 kv heads: whole kv heads per rank up to tp = 4.
  ModelConfig cfg = test::tiny_config(tied, 0.2, 8, 4);
  bool dummy = true;
  const Result ref = run(cfg, test::replicated_plan(cfg, 1), MPI_COMM_SELF, &dummy);

  for (const PlanCase& pc : plan_cases()) {
    for (int64_t tp : {1, 2, 4}) {
      MPI_Comm group;
      MPI_Comm_split(MPI_COMM_WORLD, rank / int(tp), rank, &group);
      const std::string what = pc.name + (tied ? " tied" : " untied") + " tp=" + std::to_string(tp);
      PartitionPlan plan = pc.make(cfg, tp);
      bool replicas_equal = true;
      Result r = run(cfg, plan, group, &replicas_equal);
      MPI_Comm_free(&group);

      for (auto& line : pc.expect) {
        if (tp == 1) break;
        EXPECT_NE(r.describe.find(line), std::string::npos)
            << what << ": expected \"" << line << "\" in\n"
            << r.describe;
      }
      if (rank == 0 && tp == 4) std::printf("%s:\n%s", what.c_str(), r.describe.c_str());
      EXPECT_TRUE(replicas_equal) << what << ": replicated tensors differ across TP ranks";
      EXPECT_NEAR(r.loss, ref.loss, 1e-5 * std::fabs(ref.loss)) << what;
      EXPECT_LT(rel_err(r.logits, ref.logits), 1e-5) << what << " logits";
      for (auto& [name, g] : ref.grads) {
        // The counter-based init gives the same full model whatever the split.
        EXPECT_EQ(r.params.at(name), ref.params.at(name)) << what << " init of " << name;
        EXPECT_LT(rel_err(r.grads.at(name), g), 1e-5) << what << " gradient of " << name;
      }
    }
  }
}

TEST(ModelTP, UntiedPlansMatchTp1) {
  check_all_tp(false);
}
TEST(ModelTP, TiedPlansMatchTp1) {
  check_all_tp(true);
}

// f(cfg, plan, group, tag, &replicas_equal) for tied and untied configs, every plan case and
// TP 1, 2, 4 (groups of consecutive ranks); checks that replicated shards stayed equal.
template <typename F>
void for_each_case(F&& f) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  for (bool tied : {false, true}) {
    ModelConfig cfg = test::tiny_config(tied, 0.2, 8, 4);
    for (const PlanCase& pc : plan_cases()) {
      for (int64_t tp : {1, 2, 4}) {
        MPI_Comm group;
        MPI_Comm_split(MPI_COMM_WORLD, rank / int(tp), rank, &group);
        PartitionPlan plan = pc.make(cfg, tp);
        bool replicas_equal = true;
        const std::string tag =
            pc.name + (tied ? " tied" : " untied") + " tp=" + std::to_string(tp);
        f(cfg, plan, group, int(tp), tag, &replicas_equal);
        EXPECT_TRUE(replicas_equal) << tag;
        MPI_Comm_free(&group);
      }
    }
  }
}

// The lm_head and cross-entropy over chunks of rows (5 and 5 and 2 of the 12, or one row at a
// time) give the one-chunk loss, logits and gradients, for every lm_head split and TP degree.
TEST(ModelTP, ChunkedLogitsMatchOneChunk) {
  for_each_case([](const ModelConfig& cfg, const PartitionPlan& plan, MPI_Comm group, int,
                   const std::string& tag, bool* replicas_equal) {
    const Result one = run(cfg, plan, group, replicas_equal);
    for (int64_t rows : {5, 1}) {
      const std::string what = tag + " chunk=" + std::to_string(rows);
      Result r = run(cfg, plan, group, replicas_equal, rows);
      EXPECT_NEAR(r.loss, one.loss, 1e-6 * std::fabs(one.loss)) << what;
      EXPECT_LT(rel_err(r.logits, one.logits), 1e-6) << what << " logits";
      for (auto& [name, g] : one.grads)
        EXPECT_LT(rel_err(r.grads.at(name), g), 1e-6) << what << " gradient of " << name;
    }
  });
}

// forward_backward() is forward() + backward() in one call: the same loss and gradients, for
// every plan, TP degree and chunking (bit for bit on one rank, where no all-reduce's summation
// order can differ between per-chunk and whole-batch messages).
TEST(ModelTP, ForwardBackwardEqualsForwardThenBackward) {
  for_each_case([](const ModelConfig& cfg, const PartitionPlan& plan, MPI_Comm group, int tp,
                   const std::string& tag, bool* replicas_equal) {
    for (int64_t rows : {0, 5}) {
      const std::string what = tag + " chunk=" + std::to_string(rows);
      const Result two = run(cfg, plan, group, replicas_equal, rows);
      const Result one = run(cfg, plan, group, replicas_equal, rows, true);
      if (tp == 1) {
        EXPECT_EQ(one.loss, two.loss) << what;
        for (auto& [name, g] : two.grads) EXPECT_EQ(one.grads.at(name), g) << what << name;
      } else {
        EXPECT_NEAR(one.loss, two.loss, 1e-6 * std::fabs(two.loss)) << what;
        for (auto& [name, g] : two.grads)
          EXPECT_LT(rel_err(one.grads.at(name), g), 1e-6) << what << " gradient of " << name;
      }
    }
  });
}

// The default: the fewest equal chunks of at most kLogitsChunkBytes of fp32 logits (the local
// vocab is 32 here), at most the batch; a set chunk is clamped to [1, batch].
TEST(ModelTP, LogitsChunkRows) {
  ModelConfig cfg = test::tiny_config(false, 0.02);
  auto be = make_cpu_backend();
  auto comm = make_mpi_comm(MPI_COMM_SELF);
  Phi3Model m(cfg, test::replicated_plan(cfg), 0, *comm, *be);
  const int64_t fit = int64_t(Phi3Model::kLogitsChunkBytes / sizeof(float)) / cfg.vocab_size;
  EXPECT_EQ(m.logits_chunk_rows(fit), fit);
  EXPECT_EQ(m.logits_chunk_rows(fit + 2), fit / 2 + 1);  // two equal chunks
  EXPECT_EQ(m.logits_chunk_rows(3 * fit - 3), fit - 1);  // three
  EXPECT_EQ(m.logits_chunk_rows(12), 12);
  m.set_logits_chunk_rows(5);
  EXPECT_EQ(m.logits_chunk_rows(12), 5);
  EXPECT_EQ(m.logits_chunk_rows(3), 3);
}

// load() reads exactly this rank's shard of every tensor, under any plan.
TEST(ModelTP, LoadReadsEachShard) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  ModelConfig cfg = test::tiny_config(false, 0.2, 8, 4);
  bool dummy = true;
  const Result ref = run(cfg, test::replicated_plan(cfg, 1), MPI_COMM_SELF, &dummy);
  const std::string path = std::string(AUTOTP_BINARY_DIR) + "/test_model_tp_load.h5";
  if (rank == 0) {
    ModelFileWriter w(path, cfg.to_json());
    for (auto& d : cfg.parameters())
      w.write(d.name, DType::F32, d.shape, ref.params.at(d.name).data());
    w.finish();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  ModelFileReader file(path);
  for (const PlanCase& pc : plan_cases()) {
    for (int64_t tp : {2, 4}) {
      MPI_Comm group;
      MPI_Comm_split(MPI_COMM_WORLD, rank / int(tp), rank, &group);
      auto be = make_cpu_backend();
      auto comm = make_mpi_comm(group);
      PartitionPlan plan = pc.make(cfg, tp);
      Phi3Model m(cfg, plan, comm->rank(), *comm, *be);
      m.load(file);
      for (auto& slot : m.layout().slots) {
        std::vector<float> want(slot.numel);
        extract_shard(*slot.spec, comm->rank(), ref.params.at(slot.name).data(), want.data(),
                      sizeof(float));
        EXPECT_EQ(m.param_shard(slot.name), want) << pc.name << " tp=" << tp << " " << slot.name;
      }
      Batch b = make_batch(cfg.vocab_size);
      EXPECT_NEAR(m.forward(b.ids.data(), b.targets.data(), b.B, b.T), ref.loss, 1e-5 * ref.loss);
      MPI_Comm_free(&group);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) std::remove(path.c_str());
}

// The plan must fit the TP group and the config.
TEST(ModelTP, RejectsMismatchedPlan) {
  ModelConfig cfg = test::tiny_config(false, 0.02);
  auto be = make_cpu_backend();
  auto comm = make_mpi_comm(MPI_COMM_SELF);
  EXPECT_THROW(Phi3Model(cfg, test::replicated_plan(cfg, 2), 0, *comm, *be), Error);
  ModelConfig tied = test::tiny_config(true, 0.02);
  EXPECT_THROW(Phi3Model(cfg, test::replicated_plan(tied, 1), 0, *comm, *be), Error);

  // Hand-made plans that do not cut into tp equal pieces, or lose rows, are refused.
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm pair;
  MPI_Comm_split(MPI_COMM_WORLD, rank / 2, rank, &pair);
  auto comm2 = make_mpi_comm(pair);
  for (std::vector<int64_t> parts : {std::vector<int64_t>{11, 13}, std::vector<int64_t>{12}}) {
    PartitionPlan bad = test::hand_plan(cfg, 2, [&](auto& n, auto&) {
      return test::ends_with(n, "down_proj.weight") ? Split{1, parts} : Split{};
    });
    EXPECT_THROW(Phi3Model(cfg, bad, comm2->rank(), *comm2, *be), Error);
  }
  MPI_Comm_free(&pair);
}

}  // namespace
}  // namespace autotp
