// Shard arithmetic: the ranges of hand-worked cases, and for every partition type (column, row,
// skip, fused equal, fused unequal, vocab_parallel, embedding along hidden, a 3-D logical shape)
// the shards of all TP ranks put back together give the full tensor bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "partition/plan.hpp"

using namespace autotp;
using nlohmann::json;
using Ranges = std::vector<std::pair<int64_t, int64_t>>;

namespace {

// 4 query heads, 2 KV heads, head_dim 2: qkv_proj has rows Q 0-7, K 8-11, V 12-15.
ModelConfig small_model(int64_t vocab) {
  ModelConfig m;
  m.vocab_size = vocab;
  m.hidden_size = 8;
  m.intermediate_size = 6;
  m.num_hidden_layers = 2;
  m.num_attention_heads = 4;
  m.num_key_value_heads = 2;
  m.head_dim = 2;
  m.tie_word_embeddings = false;
  return m;
}

json spec(const std::string& pattern, const std::string& type, json extra = json::object()) {
  json s = {{"patterns", {pattern}}, {"partition_type", type}};
  for (auto it = extra.begin(); it != extra.end(); ++it) s[it.key()] = it.value();
  return s;
}

PartitionPlan plan_for(json specs, int64_t tp, int64_t vocab, bool vocab_parallel = false) {
  json block = {{"partition_config", {{"layer_specs", specs}, {"vocab_parallel", vocab_parallel}}}};
  return build_plan(PartitionConfig::from_json(block, "ds.json"), small_model(vocab), tp);
}

const char* kQkv = R"(.*qkv_proj\.weight$)";
const char* kO = R"(.*o_proj\.weight$)";
const char* kGateUp = R"(.*gate_up_proj\.weight$)";
const char* kDown = R"(.*down_proj\.weight$)";

// Rank r's local tensor computed element by element from ranges(), independently of the
// run-copying extract_shard.
template <typename T>
std::vector<T> reference_local(const ShardSpec& s, int64_t r, const std::vector<T>& full) {
  if (s.replicated() && s.split_dim < 0) return full;
  const int64_t rows = s.shape[0], cols = s.shape.size() > 1 ? s.shape[1] : 1;
  std::vector<int64_t> keep;  // global indices along split_dim, in local order
  for (auto [b, e] : s.ranges(r))
    for (int64_t i = b; i < e; ++i) keep.push_back(i);
  std::vector<T> out;
  if (s.split_dim == 0) {
    for (auto i : keep)
      for (int64_t j = 0; j < cols; ++j) out.push_back(full[size_t(i * cols + j)]);
  } else {
    for (int64_t i = 0; i < rows; ++i)
      for (auto j : keep) out.push_back(full[size_t(i * cols + j)]);
  }
  return out;
}

template <typename T>
void check_round_trip(const ShardSpec& s, std::mt19937& rng) {
  const size_t n = size_t(s.global_numel()), local_n = size_t(s.local_numel());
  std::vector<T> full(n), rebuilt(n, T(0));
  for (auto& v : full) v = T(rng() | 1u);  // never 0, so a missed element shows
  int64_t covered = 0;
  for (int64_t r = 0; r < s.tp; ++r) {
    std::vector<T> local(local_n);
    extract_shard(s, r, full.data(), local.data(), sizeof(T));
    EXPECT_EQ(local, reference_local(s, r, full)) << s.name << " rank " << r;
    if (!s.replicated() || r == 0) {
      insert_shard(s, r, local.data(), rebuilt.data(), sizeof(T));
      covered += int64_t(local_n);
    }
  }
  EXPECT_EQ(covered, int64_t(n)) << s.name << ": the shards do not partition the tensor";
  EXPECT_EQ(std::memcmp(full.data(), rebuilt.data(), n * sizeof(T)), 0) << s.name;
}

void check_plan(const PartitionPlan& plan) {
  std::mt19937 rng(1234);
  for (auto& s : plan.params) {
    check_round_trip<uint32_t>(s, rng);
    check_round_trip<uint16_t>(s, rng);
  }
}

}  // namespace

TEST(PartitionShard, FusedQkvRangesByHand) {
  PartitionPlan plan =
      plan_for({spec(kQkv, "column", {{"shape", {{8, 4, 4}, -1}}}), spec(kO, "row")}, 2, 10);
  const ShardSpec& qkv = plan.at("model.layers.0.self_attn.qkv_proj.weight");
  EXPECT_EQ(qkv.shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(qkv.split_dim, 0);
  EXPECT_EQ(qkv.parts, (std::vector<int64_t>{8, 4, 4}));
  // Rank 0: query heads 0-1 (rows 0-3), KV head 0 of K (8-9) and of V (12-13).
  EXPECT_EQ(qkv.ranges(0), (Ranges{{0, 4}, {8, 10}, {12, 14}}));
  EXPECT_EQ(qkv.ranges(1), (Ranges{{4, 8}, {10, 12}, {14, 16}}));
  EXPECT_EQ(qkv.local_shape(), (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(qkv.local_numel(), 64);
  EXPECT_EQ(qkv.global_numel(), 128);
  EXPECT_FALSE(qkv.replicated());

  std::vector<float> full(128), local(64);
  for (size_t i = 0; i < full.size(); ++i) full[i] = float(i);  // value = row * 8 + col
  extract_shard(qkv, 1, full.data(), local.data(), sizeof(float));
  const int64_t rows1[8] = {4, 5, 6, 7, 10, 11, 14, 15};
  for (int64_t i = 0; i < 8; ++i)
    for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(local[size_t(i * 8 + j)], float(rows1[i] * 8 + j));

  // o_proj [8, 8] row-parallel: rank r holds input columns of query heads 2r, 2r+1.
  const ShardSpec& o = plan.at("model.layers.1.self_attn.o_proj.weight");
  EXPECT_EQ(o.split_dim, 1);
  EXPECT_EQ(o.ranges(0), (Ranges{{0, 4}}));
  EXPECT_EQ(o.ranges(1), (Ranges{{4, 8}}));
  EXPECT_EQ(o.local_shape(), (std::vector<int64_t>{8, 4}));
  std::vector<float> ofull(64), olocal(32);
  for (size_t i = 0; i < ofull.size(); ++i) ofull[i] = float(i);
  extract_shard(o, 1, ofull.data(), olocal.data(), sizeof(float));
  for (int64_t i = 0; i < 8; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(olocal[size_t(i * 4 + j)], float(i * 8 + 4 + j));
}

TEST(PartitionShard, EveryPartitionTypeRoundTrips) {
  // column, row, fused equal, fused unequal, lm_head column, embedding along hidden
  PartitionPlan a = plan_for({spec(kQkv, "column", {{"shape", {{8, 4, 4}, -1}}}), spec(kO, "row"),
                              spec(kGateUp, "column", {{"shape", {2, -1}}}), spec(kDown, "row"),
                              spec("lm_head", "column"), spec(R"(model\.embed)", "row")},
                             2, 10);
  EXPECT_EQ(a.at("model.layers.0.mlp.gate_up_proj.weight").ranges(1), (Ranges{{3, 6}, {9, 12}}));
  EXPECT_EQ(a.at("model.embed_tokens.weight").split_dim, 1);
  EXPECT_EQ(a.at("lm_head.weight").ranges(1), (Ranges{{5, 10}}));
  check_plan(a);

  // skip, unmatched, vocab_parallel
  PartitionPlan b = plan_for({spec(R"(.*(gate_up|down)_proj\.weight$)", "skip")}, 2, 10, true);
  EXPECT_TRUE(b.at("model.layers.0.mlp.gate_up_proj.weight").replicated());
  EXPECT_EQ(b.at("model.layers.0.mlp.gate_up_proj.weight").ranges(0), (Ranges{{0, 12}}));
  EXPECT_EQ(b.at("model.embed_tokens.weight").ranges(1), (Ranges{{5, 10}}));
  check_plan(b);

  // tp 1: every shard is the whole tensor.
  PartitionPlan c = plan_for({spec(kQkv, "column", {{"shape", {{8, 4, 4}, -1}}}), spec(kO, "row"),
                              spec(kGateUp, "column", {{"shape", {2, -1}}}), spec(kDown, "row")},
                             1, 10, true);
  for (auto& s : c.params) {
    EXPECT_TRUE(s.replicated());
    EXPECT_EQ(s.local_shape(), s.shape);
  }
  EXPECT_EQ(c.at("model.layers.0.self_attn.qkv_proj.weight").ranges(0),
            (Ranges{{0, 8}, {8, 12}, {12, 16}}));
  check_plan(c);
}

TEST(PartitionShard, ThreeDimensionalLogicalShape) {
  // lm_head [24, 8] viewed as [2 blocks, 2 sub-parameters x 6, 8], split along the middle dim
  // (DeepSpeed's MoE-style shape): rank r holds logical[o, j*6 + 3r : j*6 + 3r + 3, :].
  PartitionPlan p =
      plan_for({spec("lm_head", "column", {{"shape", {2, 2, 8}}, {"partition_dim", 1}})}, 2, 24);
  const ShardSpec& s = p.at("lm_head.weight");
  EXPECT_EQ(s.parts, (std::vector<int64_t>{6, 6, 6, 6}));
  EXPECT_EQ(s.rule, "layer_specs[0] column shape [2,2,8] dim 1");
  std::vector<uint32_t> full(24 * 8), local(12 * 8);
  for (size_t i = 0; i < full.size(); ++i) full[i] = uint32_t(i);
  for (int64_t r = 0; r < 2; ++r) {
    extract_shard(s, r, full.data(), local.data(), sizeof(uint32_t));
    size_t at = 0;
    for (int64_t o = 0; o < 2; ++o)
      for (int64_t j = 0; j < 2; ++j)
        for (int64_t m = 3 * r; m < 3 * r + 3; ++m)
          for (int64_t c = 0; c < 8; ++c) {
            const int64_t row = o * 12 + j * 6 + m;
            EXPECT_EQ(local[at++], uint32_t(row * 8 + c))
                << "rank " << r << " o " << o << " j " << j;
          }
  }
  check_plan(p);
}

TEST(PartitionShard, GroupsLayerNames) {
  EXPECT_EQ(layer_key("model.layers.17.mlp.down_proj.weight"),
            "model.layers.N.mlp.down_proj.weight");
  EXPECT_EQ(layer_key("lm_head.weight"), "lm_head.weight");
  EXPECT_EQ(
      group_layer_names({"model.embed_tokens.weight", "model.layers.0.a.weight",
                         "model.layers.1.a.weight", "model.layers.2.a.weight",
                         "model.layers.7.a.weight", "model.layers.3.b.weight", "lm_head.weight"}),
      (std::vector<std::string>{"model.embed_tokens.weight", "model.layers.{0-2,7}.a.weight",
                                "model.layers.3.b.weight", "lm_head.weight"}));
}
