// Head-boundary checks for the fused GQA weights of Phi-4 (40 query / 10 KV heads) and
// Phi-4-mini (24 / 8), at tp 1, 2, 4, 8: which plans pass, which fail, and the fix each failure
// prints. The seed's shape [3, -1] is rejected with the exact shape to write.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "core/error.hpp"
#include "partition/gqa_check.hpp"
#include "partition/plan.hpp"
#include "test_util.hpp"

using namespace autotp;
using nlohmann::json;

namespace {

json phi_specs(json qkv_shape, json gate_up_shape = {2, -1}) {
  json qkv = {{"patterns", {R"(.*\.self_attn\.qkv_proj\.weight$)"}},
              {"partition_type", "column"},
              {"partition_dim", 0}};
  if (!qkv_shape.is_null()) qkv["shape"] = qkv_shape;
  json gu = {{"patterns", {R"(.*\.mlp\.gate_up_proj\.weight$)"}},
             {"partition_type", "column"},
             {"partition_dim", 0}};
  if (!gate_up_shape.is_null()) gu["shape"] = gate_up_shape;
  return {{"partition_config",
           {{"use_default_specs", false},
            {"layer_specs",
             {qkv,
              {{"patterns", {R"(.*\.self_attn\.o_proj\.weight$)"}}, {"partition_type", "row"}},
              gu,
              {{"patterns", {R"(.*\.mlp\.down_proj\.weight$)"}}, {"partition_type", "row"}}}}}}};
}

// "" when the plan builds, else the error.
std::string plan_error(const json& tp_block, const std::string& model, int64_t tp) {
  try {
    build_plan(PartitionConfig::from_json(tp_block, "ds.json"), ModelConfig::preset(model), tp);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const json kPhi4Qkv = {{5120, 1280, 1280}, -1};
const json kMiniQkv = {{3072, 1024, 1024}, -1};

}  // namespace

TEST(PartitionGqa, ShapeText) {
  EXPECT_EQ(qkv_shape_text(ModelConfig::preset("phi-4")), "[[5120, 1280, 1280], -1]");
  EXPECT_EQ(qkv_shape_text(ModelConfig::preset("phi-4-mini")), "[[3072, 1024, 1024], -1]");
  EXPECT_EQ(qkv_shape_text(ModelConfig::preset("phi-4-multimodal")), "[[3072, 1024, 1024], -1]");
  EXPECT_EQ(qkv_shape_text(ModelConfig::preset("tiny")), "[[128, 64, 64], -1]");
}

// The tp values listed are exactly those build_plan accepts, vocab_parallel included: Phi-4's
// vocabulary of 100352 = 2^11 x 49 does not divide by 5 or 10.
TEST(PartitionGqa, PlannableTpIsWhatPlans) {
  struct Case {
    const char* model;
    json qkv;
    bool vocab_parallel;
    std::vector<int64_t> want;
  };
  for (const Case& c :
       {Case{"phi-4", kPhi4Qkv, false, {1, 2, 5, 10}}, Case{"phi-4", kPhi4Qkv, true, {1, 2}},
        Case{"phi-4-mini", kMiniQkv, false, {1, 2, 4, 8}},
        Case{"phi-4-mini", kMiniQkv, true, {1, 2, 4, 8}}, Case{"phi-4", json{3, -1}, false, {}}}) {
    json tp_block = phi_specs(c.qkv);
    tp_block["partition_config"]["vocab_parallel"] = c.vocab_parallel;
    const PartitionConfig pc = PartitionConfig::from_json(tp_block, "ds.json");
    const ModelConfig mc = ModelConfig::preset(c.model);
    const std::vector<int64_t> got = plannable_tp_sizes(pc, mc);
    EXPECT_EQ(got, c.want) << c.model << " vocab_parallel " << c.vocab_parallel;
    for (int64_t tp = 1; tp <= mc.num_attention_heads; ++tp) {
      const bool listed = std::find(got.begin(), got.end(), tp) != got.end();
      EXPECT_EQ(plan_error(tp_block, c.model, tp).empty(), listed) << c.model << " tp " << tp;
    }
  }
  // The shipped Phi-4 config (vocab_parallel on) at tp 5: refused, and 5 is not offered.
  auto j = json::parse(std::ifstream(AUTOTP_SOURCE_DIR "/configs/phi-4.json"));
  std::string e = plan_error(j["tensor_parallel"], "phi-4", 5);
  EXPECT_TRUE(has(e, "vocab_size 100352 is not divisible by tp 5")) << e;
  EXPECT_TRUE(has(e, ". tp values that work for this model under this config: 1 or 2")) << e;
}

TEST(PartitionGqa, Phi4CorrectShapeWorksWhereTpDividesTheKvHeads) {
  for (int64_t tp : {1, 2}) EXPECT_EQ(plan_error(phi_specs(kPhi4Qkv), "phi-4", tp), "") << tp;
  for (int64_t tp : {4, 8}) {
    std::string e = plan_error(phi_specs(kPhi4Qkv), "phi-4", tp);
    EXPECT_TRUE(has(e,
                    "ds.json: layer_specs[0] on model.layers.0.self_attn.qkv_proj.weight "
                    "[7680, 5120]: tp " +
                        std::to_string(tp) + " does not divide the 10 KV heads"))
        << e;
    EXPECT_TRUE(has(e, "tp values that work for this model under this config: 1, 2, 5 or 10")) << e;
  }
  // 1280 / 4 = 320 rows would pass a plain divisibility check: 2.5 heads per rank.
  PartitionPlan p2 = build_plan(PartitionConfig::from_json(phi_specs(kPhi4Qkv), "ds.json"),
                                ModelConfig::preset("phi-4"), 2);
  const ShardSpec& qkv = p2.at("model.layers.39.self_attn.qkv_proj.weight");
  EXPECT_EQ(qkv.parts, (std::vector<int64_t>{5120, 1280, 1280}));
  // Rank 1: query heads 20-39, KV heads 5-9 (of K and of V).
  EXPECT_EQ(qkv.ranges(1),
            (std::vector<std::pair<int64_t, int64_t>>{{2560, 5120}, {5760, 6400}, {7040, 7680}}));
}

TEST(PartitionGqa, Phi4MiniCorrectShapeWorksAtEveryPowerOfTwo) {
  for (const char* model : {"phi-4-mini", "phi-4-multimodal"}) {
    for (int64_t tp : {1, 2, 4, 8}) EXPECT_EQ(plan_error(phi_specs(kMiniQkv), model, tp), "") << tp;
    std::string e = plan_error(phi_specs(kMiniQkv), model, 16);
    EXPECT_TRUE(has(e, "tp 16 does not divide the 8 KV heads (24 query heads)")) << e;
    EXPECT_TRUE(has(e, "tp values that work for this model under this config: 1, 2, 4 or 8")) << e;
    e = plan_error(phi_specs(kMiniQkv), model, 3);
    EXPECT_TRUE(has(e, "tp 3 does not divide the 8 KV heads")) << e;
  }
}

TEST(PartitionGqa, EqualThirdsAreRejectedWithTheExactShape) {
  // Phi-4: 7680 rows divide by 3, but the cuts at 2560 and 5120 fall inside Q.
  for (int64_t tp : {1, 2, 4, 8}) {
    std::string e = plan_error(phi_specs({3, -1}), "phi-4", tp);
    EXPECT_TRUE(has(e,
                    "layer_specs[0] on model.layers.0.self_attn.qkv_proj.weight [7680, 5120]: "
                    "shape [3,-1] splits the rows into sub-parameters [2560, 2560, 2560], not "
                    "at the Q/K/V boundaries"))
        << tp << ": " << e;
    EXPECT_TRUE(has(e, "write \"shape\": [[5120, 1280, 1280], -1]")) << e;
    EXPECT_TRUE(has(e,
                    "with \"partition_dim\": 0. With that shape, the tp values that work for "
                    "this model under this config: 1, 2, 5 or 10"))
        << e;
  }
  // Phi-4-mini and the multimodal text model: 5120 rows do not divide by 3 at all.
  for (const char* model : {"phi-4-mini", "phi-4-multimodal"})
    for (int64_t tp : {1, 2, 4, 8}) {
      std::string e = plan_error(phi_specs({3, -1}), model, tp);
      EXPECT_TRUE(has(e, "[5120, 3072]: the rows 5120 are not divisible by the 3 sub-parameters"))
          << e;
      EXPECT_TRUE(has(e, "write \"shape\": [[3072, 1024, 1024], -1]")) << e;
    }
  // No shape at all splits Q, K and V as one block: also wrong.
  std::string e = plan_error(phi_specs(nullptr), "phi-4-mini", 2);
  EXPECT_TRUE(has(e, "the spec splits the rows as one block, not at the Q/K/V boundaries")) << e;
  EXPECT_TRUE(has(e, "\"shape\": [[3072, 1024, 1024], -1]")) << e;
  // Phi-4's sizes on Phi-4-mini: they sum to 7680, not 5120.
  e = plan_error(phi_specs(kPhi4Qkv), "phi-4-mini", 2);
  EXPECT_TRUE(has(e,
                  "the sub-parameter sizes [5120, 1280, 1280] sum to 7680 but the weight has "
                  "5120 rows"))
      << e;
  EXPECT_TRUE(has(e, "\"shape\": [[3072, 1024, 1024], -1]")) << e;
}

TEST(PartitionGqa, TheSeedConfigIsRejected) {
  auto j = json::parse(std::ifstream(AUTOTP_SOURCE_DIR "/configs/seed-phi4-multimodal.json"));
  PartitionConfig pc = PartitionConfig::from_json(j["tensor_parallel"], "seed.json");
  try {
    build_plan(pc, ModelConfig::preset("phi-4-multimodal"), pc.autotp_size);
    FAIL() << "the seed's [3, -1] was accepted";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(),
                    "seed.json: layer_specs[0] on "
                    "model.layers.0.self_attn.qkv_proj.weight [5120, 3072]"))
        << e.what();
    EXPECT_TRUE(has(e.what(), "\"shape\": [[3072, 1024, 1024], -1]")) << e.what();
    // In the same message: which tp values the model allows once the shape is written.
    EXPECT_TRUE(has(e.what(),
                    ". With that shape, the tp values that work for this model under this "
                    "config: 1, 2, 4 or 8"))
        << e.what();
  }
}

TEST(PartitionGqa, GateUpMustBeGateAndUp) {
  for (json bad : {json{4, -1}, json{{4096, 12288}, -1}}) {
    std::string e = plan_error(phi_specs(kMiniQkv, bad), "phi-4-mini", 2);
    EXPECT_TRUE(has(e, "layer_specs[2] on model.layers.0.mlp.gate_up_proj.weight [16384, 3072]"))
        << e;
    EXPECT_TRUE(has(e, "gate and up of 8192 each")) << e;
    EXPECT_TRUE(has(e, "write \"shape\": [2, -1]")) << e;
  }
  std::string e = plan_error(phi_specs(kMiniQkv, nullptr), "phi-4-mini", 2);
  EXPECT_TRUE(has(e, "splits the rows as one block")) << e;
  EXPECT_TRUE(has(e, "\"shape\": [2, -1]")) << e;
  e = plan_error(phi_specs(kMiniQkv, {3, -1}), "phi-4-mini", 2);  // 16384 % 3 != 0
  EXPECT_TRUE(has(e, "not divisible by the 3 sub-parameters")) << e;
  EXPECT_TRUE(has(e, "\"shape\": [2, -1]")) << e;
  EXPECT_EQ(plan_error(phi_specs(kMiniQkv, {{8192, 8192}, -1}), "phi-4-mini", 2), "");
}

TEST(PartitionGqa, RowSplitsFollowTheHeads) {
  json specs = phi_specs(kMiniQkv);
  specs["partition_config"]["layer_specs"][1]["shape"] = {-1, 2};  // o_proj in two halves
  std::string e = plan_error(specs, "phi-4-mini", 2);
  EXPECT_TRUE(has(e,
                  "model.layers.0.self_attn.o_proj.weight [3072, 3072]: o_proj's input columns "
                  "are the attention heads in order"))
      << e;
  specs = phi_specs(kMiniQkv);
  specs["partition_config"]["layer_specs"][3]["shape"] = {-1, {4096, 4096}};
  e = plan_error(specs, "phi-4-mini", 2);
  EXPECT_TRUE(has(e, "down_proj's input columns are the intermediate units")) << e;
}

TEST(PartitionGqa, ShippedConfigsPlanTheirModels) {
  struct Case {
    const char* config;
    const char* model;
  };
  for (auto c : {Case{"phi-4", "phi-4"}, Case{"phi-4-mini", "phi-4-mini"},
                 Case{"phi-4-multimodal", "phi-4-multimodal"}, Case{"tiny", "tiny"}}) {
    auto j =
        json::parse(std::ifstream(std::string(AUTOTP_SOURCE_DIR "/configs/") + c.config + ".json"));
    PartitionConfig pc = PartitionConfig::from_json(j["tensor_parallel"], c.config);
    ModelConfig mc = ModelConfig::preset(c.model);
    PartitionPlan plan = build_plan(pc, mc, pc.autotp_size);
    EXPECT_TRUE(plan.unmatched.empty()) << c.config;
    EXPECT_TRUE(plan.notes.empty()) << c.config << ": " << plan.notes.front();
    const ShardSpec& qkv = plan.at("model.layers.0.self_attn.qkv_proj.weight");
    EXPECT_EQ(qkv.parts, (std::vector<int64_t>{mc.q_rows(), mc.kv_rows(), mc.kv_rows()}));
    EXPECT_EQ(qkv.local_shape()[0], (mc.q_rows() + 2 * mc.kv_rows()) / pc.autotp_size);
  }
}
