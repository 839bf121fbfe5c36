// partition_config with DeepSpeed's semantics: spec parsing and its errors, precedence,
// model_types, presets and their merge order, strict_mode, embeddings and vocab_parallel, and
// every error case of the reference's shape handling (each message names spec and parameter).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "core/error.hpp"
#include "partition/plan.hpp"
#include "test_util.hpp"

using namespace autotp;
using nlohmann::json;

namespace {

const char* kQkv = R"(.*\.self_attn\.qkv_proj\.weight$)";
const char* kO = R"(.*\.self_attn\.o_proj\.weight$)";
const char* kGateUp = R"(.*\.mlp\.gate_up_proj\.weight$)";
const char* kDown = R"(.*\.mlp\.down_proj\.weight$)";

json spec(const std::string& pattern, const std::string& type, json extra = json::object()) {
  json s = {{"patterns", {pattern}}, {"partition_type", type}};
  for (auto it = extra.begin(); it != extra.end(); ++it) s[it.key()] = it.value();
  return s;
}

// The four specs a Phi-3 model needs, with the tiny model's qkv shape.
json tiny_specs() {
  return {spec(kQkv, "column", {{"shape", {{128, 64, 64}, -1}}, {"partition_dim", 0}}),
          spec(kO, "row"), spec(kGateUp, "column", {{"shape", {2, -1}}, {"partition_dim", 0}}),
          spec(kDown, "row")};
}

json tp_block(json layer_specs, json extra = json::object()) {
  json pc = {{"use_default_specs", false}, {"layer_specs", std::move(layer_specs)}};
  for (auto it = extra.begin(); it != extra.end(); ++it) pc[it.key()] = it.value();
  return {{"autotp_size", 2}, {"partition_config", pc}};
}

PartitionConfig parse(const json& tp) {
  return PartitionConfig::from_json(tp, "ds.json");
}

ModelConfig tiny(bool tied = true) {
  ModelConfig m = ModelConfig::preset("tiny");
  m.tie_word_embeddings = tied;
  return m;
}

std::string parse_error(const json& tp) {
  try {
    parse(tp);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

std::string plan_error(const json& tp, const ModelConfig& mc, int64_t tp_size) {
  try {
    build_plan(parse(tp), mc, tp_size);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(PartitionConfig, ParsesTheSeedConfig) {
  auto j = json::parse(std::ifstream(AUTOTP_SOURCE_DIR "/configs/seed-phi4-multimodal.json"));
  PartitionConfig pc = parse(j["tensor_parallel"]);
  EXPECT_EQ(pc.autotp_size, 4);
  EXPECT_FALSE(pc.use_default_specs);
  EXPECT_FALSE(pc.strict_mode);
  EXPECT_FALSE(pc.vocab_parallel);
  ASSERT_EQ(pc.specs.size(), 4u);
  EXPECT_EQ(pc.specs[0].origin, "layer_specs[0]");
  EXPECT_EQ(pc.specs[0].type, PartitionType::Column);
  EXPECT_EQ(pc.specs[0].dim(), 0);
  EXPECT_EQ(shape_to_string(pc.specs[0].shape), "[3,-1]");
  EXPECT_EQ(pc.specs[0].describe(), "layer_specs[0] column shape [3,-1]");
  EXPECT_EQ(pc.specs[1].type, PartitionType::Row);
  EXPECT_EQ(pc.specs[1].dim(), 1);  // the row default
  EXPECT_EQ(pc.specs[1].describe(), "layer_specs[1] row");
  EXPECT_TRUE(pc.specs[1].shape.empty());
  EXPECT_EQ(pc.specs[2].describe(), "layer_specs[2] column shape [2,-1]");
}

TEST(PartitionConfig, RulesNameTheDecidingSpec) {
  PartitionPlan plan = build_plan(parse(tp_block(tiny_specs())), tiny(false), 2);
  EXPECT_EQ(plan.at("model.layers.0.self_attn.qkv_proj.weight").rule,
            "layer_specs[0] column shape [[128,64,64],-1]");
  EXPECT_EQ(plan.at("model.layers.3.self_attn.o_proj.weight").rule, "layer_specs[1] row");
  EXPECT_EQ(plan.at("model.layers.0.input_layernorm.weight").rule, "1-D -> replicated");
  EXPECT_EQ(plan.at("model.embed_tokens.weight").rule, "unmatched -> replicated");
  // Issue (b): every 2-D weight that matches no spec is reported.
  EXPECT_EQ(plan.unmatched,
            (std::vector<std::string>{"model.embed_tokens.weight", "lm_head.weight"}));
  EXPECT_TRUE(plan.at("lm_head.weight").replicated());
}

TEST(PartitionConfig, FirstMatchingSpecWinsAndTheOthersAreNoted) {
  json specs = tiny_specs();
  specs.insert(specs.begin() + 1, spec(R"(.*proj\.weight$)", "skip"));  // shadows o_proj, down
  PartitionPlan plan = build_plan(parse(tp_block(specs)), tiny(), 1);
  EXPECT_EQ(plan.at("model.layers.0.self_attn.qkv_proj.weight").rule,
            "layer_specs[0] column shape [[128,64,64],-1]");  // earlier than the catch-all
  EXPECT_EQ(plan.at("model.layers.0.self_attn.o_proj.weight").rule, "layer_specs[1] skip");
  EXPECT_EQ(plan.at("model.layers.2.mlp.down_proj.weight").rule, "layer_specs[1] skip");
  std::vector<std::string> want = {
      "model.layers.{0-3}.self_attn.qkv_proj.weight matches layer_specs[0] and also "
      "layer_specs[1]; the first in order wins, as in DeepSpeed",
      "model.layers.{0-3}.self_attn.o_proj.weight matches layer_specs[1] and also "
      "layer_specs[2]; the first in order wins, as in DeepSpeed"};
  for (auto& w : want)
    EXPECT_NE(std::find(plan.notes.begin(), plan.notes.end(), w), plan.notes.end()) << w;
  bool noted_dead = false;
  for (auto& n : plan.notes) noted_dead |= has(n, "layer_specs[2] decides nothing");
  EXPECT_TRUE(noted_dead);
}

TEST(PartitionConfig, ModelTypesAreCaseInsensitiveFilters) {
  json specs = tiny_specs();
  for (auto& s : specs) s["model_types"] = {"PHI3"};
  PartitionConfig pc = parse(tp_block(specs));
  ModelConfig phi3 = tiny();
  EXPECT_EQ(build_plan(pc, phi3, 2).at("model.layers.0.self_attn.o_proj.weight").split_dim, 1);
  ModelConfig mm = tiny();
  mm.model_type = "phi4mm";
  PartitionPlan other = build_plan(pc, mm, 2);
  EXPECT_TRUE(other.at("model.layers.0.self_attn.o_proj.weight").replicated());
  EXPECT_EQ(other.unmatched.size(), 1u + 4 * 4);  // the embedding and every layer's linears
  bool noted = false;
  for (auto& n : other.notes) noted |= has(n, "layer_specs[0]") && has(n, "matches no weight");
  EXPECT_TRUE(noted);
}

TEST(PartitionConfig, SpecErrorsNameTheField) {
  struct Case {
    json spec;
    std::vector<std::string> parts;
  };
  std::vector<Case> cases = {
      {spec(kO, "diagonal"),
       {"ds.json: tensor_parallel.partition_config.layer_specs[0].partition_type", "diagonal",
        "\"column\", \"row\", \"skip\""}},
      {{{"patterns", {kO, "(unclosed"}}, {"partition_type", "row"}},
       {"layer_specs[0].patterns[1]", "(unclosed", "not a valid regular expression"}},
      {{{"patterns", {kO}}, {"partiton_type", "row"}},
       {"layer_specs[0]: unknown key 'partiton_type'", "check its spelling"}},
      {{{"patterns", kO}, {"partition_type", "row"}}, {"layer_specs[0].patterns must be a list"}},
      {{{"partition_type", "row"}}, {"layer_specs[0]: \"patterns\" is missing"}},
      {{{"patterns", json::array()}}, {"layer_specs[0].patterns is empty"}},
      {spec(kO, "row", {{"partition_dim", 0}}),
       {"layer_specs[0]", "a row spec splits the input dim"}},
      {spec(kQkv, "column", {{"partition_dim", 1}}),
       {"layer_specs[0]", "a column spec splits an output dim"}},
      {spec(kQkv, "column", {{"shape", {3, -1}}, {"partition_dim", 1}}),
       {"layer_specs[0]", "a column spec splits an output dim"}},
      {spec(kO, "row", {{"model_types", "phi3"}}), {"layer_specs[0].model_types must be a list"}},
      // shape format errors (TPLayerSpec._validate_shape_format)
      {spec(kQkv, "column", {{"shape", {-1, {64, 64}}}, {"partition_dim", 0}}),
       {"layer_specs[0].shape", "nested list is only allowed at partition_dim (0)"}},
      {spec(kQkv, "column", {{"shape", {{128, 0, 64}, -1}}}),
       {"layer_specs[0].shape", "sub-parameter sizes must be positive integers, got 0"}},
      {spec(kQkv, "column", {{"shape", {0, -1}}}),
       {"layer_specs[0].shape", "must be a positive integer or -1 (infer), got 0"}},
      {spec(kQkv, "column", {{"shape", {-2, -1}}}),
       {"layer_specs[0].shape", "must be a positive integer or -1 (infer), got -2"}},
      {spec(kQkv, "column", {{"shape", {{{1, 2}}, -1}}}),
       {"layer_specs[0].shape", "only one level of nesting"}},
      {spec(kQkv, "column", {{"shape", {json::array(), -1}}}),
       {"layer_specs[0].shape", "the sub-parameter size list is empty"}},
      {spec(kQkv, "column", {{"shape", {3, -1}}, {"partition_dim", 2}}),
       {"layer_specs[0].shape", "partition_dim 2 is out of range"}},
      {spec(kQkv, "column", {{"shape", {-1}}}), {"layer_specs[0].shape", "at least two entries"}},
  };
  for (auto& c : cases) {
    std::string e = parse_error(tp_block({c.spec}));
    for (auto& p : c.parts)
      EXPECT_TRUE(has(e, p)) << c.spec.dump() << "\n  -> " << e << "\n  missing: " << p;
  }
}

TEST(PartitionConfig, PartitionConfigErrors) {
  EXPECT_TRUE(has(parse_error(tp_block(tiny_specs(), {{"strct_mode", true}})),
                  "tensor_parallel.partition_config: unknown key 'strct_mode'"));
  EXPECT_TRUE(has(parse_error({{"preset_model", "gpt9"}}),
                  "tensor_parallel.preset_model \"gpt9\" is not a preset"));
  EXPECT_TRUE(has(parse_error(tp_block(tiny_specs(), {{"strict_mode", "yes"}})),
                  "partition_config.strict_mode must be true or false"));
  EXPECT_TRUE(has(parse_error(tp_block(tiny_specs(), {{"embedding_partition_dim", 0}})),
                  "\"vocab_parallel\": true"));
  EXPECT_TRUE(has(parse_error({{"autotp_size", -2}}), "tensor_parallel.autotp_size"));
}

// Each error case of the reference's _infer_subparam_logical_shapes and _partition_logical_tensor
// names the spec and the parameter (and its shape).
TEST(PartitionConfig, ShapeErrorsNameSpecAndParameter) {
  const std::string down = "model.layers.0.mlp.down_proj.weight [128, 384]";
  struct Case {
    json spec;
    int64_t tp;
    std::string param, what;
  };
  std::vector<Case> cases = {
      // last dim != the weight's input dim
      {spec(kDown, "row", {{"shape", {64, {100, 200}}}}), 2, down,
       "whose last dim 300 must equal the weight's input dim 384"},
      // output dims' product != the weight's rows
      {spec(kDown, "column", {{"shape", {{10, 20}, 3, 384}}}), 2, down,
       "whose output dims multiply to 90 but the weight has 128 rows"},
      // rows not divisible by the count
      {spec(kDown, "column", {{"shape", {5, -1}}}), 1, down,
       "the rows 128 are not divisible by the 5 sub-parameters of shape [5,-1]"},
      // sizes not summing to the rows
      {spec(kDown, "column", {{"shape", {{100, 20}, -1}}}), 1, down,
       "the sub-parameter sizes [100, 20] sum to 120 but the weight has 128 rows"},
      // inference impossible
      {spec(kDown, "column", {{"shape", {7, 5, 384}}, {"partition_dim", 1}}), 1, down,
       "cannot be inferred"},
      {spec(kDown, "column", {{"shape", {-1, 2, -1}}, {"partition_dim", 1}}), 1, down, "ambiguous"},
      // a sub-parameter not divisible by tp
      {spec(kDown, "column", {{"shape", {{60, 68}, -1}}}), 8, down,
       "sub-parameter size 60 (of [60, 68]) is not divisible by tp 8"},
      // an unfused split not divisible by tp
      {spec(kDown, "row"), 5, down, "the split dim's size 384 is not divisible by tp 5"},
  };
  for (auto& c : cases) {
    std::string e = plan_error(tp_block({c.spec}), tiny(), c.tp);
    EXPECT_TRUE(has(e, "ds.json: layer_specs[0] on " + c.param + ": "))
        << c.spec.dump() << " -> " << e;
    EXPECT_TRUE(has(e, c.what)) << c.spec.dump() << "\n  -> " << e << "\n  missing: " << c.what;
  }
}

TEST(PartitionConfig, StrictModeListsEveryUnmatchedWeight) {
  json specs = {tiny_specs()[0], tiny_specs()[1]};  // attention only
  std::string e = plan_error(tp_block(specs, {{"strict_mode", true}}), tiny(false), 2);
  EXPECT_TRUE(has(e,
                  "ds.json: strict_mode: no layer spec matches these weights: "
                  "model.embed_tokens.weight, model.layers.{0-3}.mlp.gate_up_proj.weight, "
                  "model.layers.{0-3}.mlp.down_proj.weight, lm_head.weight."))
      << e;
  // Without strict_mode the same plan replicates them and reports each one.
  PartitionPlan plan = build_plan(parse(tp_block(specs)), tiny(false), 2);
  EXPECT_EQ(plan.unmatched.size(), 2u + 2 * 4);
  EXPECT_EQ(plan.unmatched.front(), "model.embed_tokens.weight");
  EXPECT_EQ(plan.unmatched.back(), "lm_head.weight");
  // A skip spec satisfies strict_mode.
  specs.push_back(spec(R"(.*(gate_up|down)_proj\.weight$|lm_head|model\.embed)", "skip"));
  EXPECT_NO_THROW(build_plan(parse(tp_block(specs, {{"strict_mode", true}})), tiny(false), 2));
}

TEST(PartitionConfig, PresetsAndTheirMergeOrder) {
  // preset_model alone: the preset's specs, as DeepSpeed defines them.
  PartitionConfig p = parse({{"preset_model", "Phi3"}});
  ASSERT_EQ(p.specs.size(), 4u);
  EXPECT_EQ(p.specs[0].describe(), "preset phi3 [0] row");
  EXPECT_EQ(p.specs[1].describe(), "preset phi3 [1] column shape [3,-1]");
  EXPECT_EQ(p.specs[3].describe(), "preset phi3 [3] column shape [2,-1]");
  for (auto& name : PartitionConfig::preset_names())
    EXPECT_FALSE(PartitionConfig::preset_specs(name).empty()) << name;
  EXPECT_EQ(PartitionConfig::preset_specs("llama")[1].patterns[0],
            R"(.*\.self_attn\.[qkv]_proj\.weight$)");
  // DeepSpeed's phi3 preset cannot split a GQA model: its qkv shape is [3,-1].
  std::string e = plan_error({{"preset_model", "phi3"}}, tiny(), 2);
  EXPECT_TRUE(has(e, "preset phi3 [1] on model.layers.0.self_attn.qkv_proj.weight")) << e;
  EXPECT_TRUE(has(e, "\"shape\": [[128, 64, 64], -1]")) << e;

  // use_default_specs (default true): the user's specs first, then the preset's.
  json user = {{"preset_model", "phi3"},
               {"partition_config",
                {{"layer_specs", {spec(kQkv, "column", {{"shape", {{128, 64, 64}, -1}}})}}}}};
  PartitionConfig merged = parse(user);
  ASSERT_EQ(merged.specs.size(), 5u);
  PartitionPlan plan = build_plan(merged, tiny(), 2);
  EXPECT_EQ(plan.at("model.layers.0.self_attn.qkv_proj.weight").rule,
            "layer_specs[0] column shape [[128,64,64],-1]");
  EXPECT_EQ(plan.at("model.layers.0.self_attn.o_proj.weight").rule, "preset phi3 [0] row");
  EXPECT_EQ(plan.at("model.layers.0.mlp.gate_up_proj.weight").rule,
            "preset phi3 [3] column shape [2,-1]");
  // use_default_specs false: the user's specs alone.
  user["partition_config"]["use_default_specs"] = false;
  EXPECT_EQ(parse(user).specs.size(), 1u);
}

TEST(PartitionConfig, EmbeddingsAndHeads) {
  json specs = tiny_specs();
  specs.push_back(spec(R"(model\.embed_tokens\.weight$)", "column"));
  specs.push_back(spec(R"(lm_head\.weight$)", "column"));
  PartitionPlan plan = build_plan(parse(tp_block(specs)), tiny(false), 2);
  const ShardSpec& emb = plan.at("model.embed_tokens.weight");
  EXPECT_EQ(emb.split_dim, 1);  // DeepSpeed: a matched embedding is split along hidden
  EXPECT_EQ(emb.local_shape(), (std::vector<int64_t>{2048, 64}));
  EXPECT_EQ(emb.rule, "layer_specs[4] column (embedding: split along hidden)");
  const ShardSpec& head = plan.at("lm_head.weight");
  EXPECT_EQ(head.split_dim, 0);  // column: vocab rows
  EXPECT_EQ(head.local_shape(), (std::vector<int64_t>{1024, 128}));
  EXPECT_TRUE(plan.unmatched.empty());

  // vocab_parallel takes precedence over the specs for both.
  PartitionPlan vp = build_plan(parse(tp_block(specs, {{"vocab_parallel", true}})), tiny(false), 4);
  for (auto name : {"model.embed_tokens.weight", "lm_head.weight"}) {
    const ShardSpec& s = vp.at(name);
    EXPECT_EQ(s.rule, "vocab_parallel");
    EXPECT_EQ(s.split_dim, 0);
    EXPECT_EQ(s.local_shape(), (std::vector<int64_t>{512, 128}));
    EXPECT_EQ(s.ranges(3), (std::vector<std::pair<int64_t, int64_t>>{{1536, 2048}}));
  }
  bool noted = false;
  for (auto& n : vp.notes)
    noted |= n == "vocab_parallel supersedes layer_specs[4] column for model.embed_tokens.weight";
  EXPECT_TRUE(noted);
  ModelConfig odd = tiny();
  odd.vocab_size = 2050;
  std::string e = plan_error(tp_block(tiny_specs(), {{"vocab_parallel", true}}), odd, 4);
  EXPECT_TRUE(has(e, "vocab_size 2050 is not divisible by tp 4")) << e;
  EXPECT_TRUE(has(e, "model.embed_tokens.weight")) << e;
}

TEST(PartitionConfig, NormsStayReplicatedEvenWhenMatched) {
  json specs = tiny_specs();
  specs.push_back(spec(".*", "column"));
  PartitionPlan plan = build_plan(parse(tp_block(specs)), tiny(), 2);
  EXPECT_TRUE(plan.at("model.norm.weight").replicated());
  EXPECT_EQ(plan.at("model.layers.1.input_layernorm.weight").rule, "1-D -> replicated");
  EXPECT_EQ(plan.at("model.embed_tokens.weight").split_dim, 1);  // caught by ".*"
}

TEST(PartitionConfig, UnpairedSplitsAreNotedNotRefused) {
  // The model computes any plan (test_model_tp runs mixed ones); the plan says what it costs.
  auto joined = [](const PartitionPlan& p) {
    std::string all;
    for (auto& n : p.notes) all += n + "\n";
    return all;
  };
  json specs = {tiny_specs()[0], tiny_specs()[2], tiny_specs()[3]};  // o_proj unmatched
  PartitionPlan plan = build_plan(parse(tp_block(specs)), tiny(), 2);
  std::string e = joined(plan);
  EXPECT_TRUE(has(e,
                  "self_attn.qkv_proj.weight is layer_specs[0] column shape "
                  "[[128,64,64],-1] but o_proj.weight is unmatched -> replicated: the "
                  "attention runs with its activation all-gathered"))
      << e;
  EXPECT_TRUE(has(e, "model.layers.{0-3}.self_attn.qkv_proj.weight")) << e;  // one line
  EXPECT_FALSE(has(joined(build_plan(parse(tp_block(specs)), tiny(), 1)), "all-gathered"));
  json col_down = tiny_specs();
  col_down[3] = spec(kDown, "column");
  e = joined(build_plan(parse(tp_block(col_down)), tiny(), 2));
  EXPECT_TRUE(has(e,
                  "down_proj.weight is layer_specs[3] column (split along its output): the "
                  "MLP runs with its activation all-gathered"))
      << e;
  EXPECT_FALSE(has(joined(build_plan(parse(tp_block(tiny_specs())), tiny(), 2)), "all-gathered"));
}

TEST(PartitionConfig, NoPartitionConfigMeansEverythingReplicated) {
  PartitionPlan plan = build_plan(parse({{"autotp_size", 2}}), tiny(), 2);
  for (auto& s : plan.params) EXPECT_TRUE(s.replicated()) << s.name;
  EXPECT_EQ(plan.unmatched.size(), 1u + 4 * 4);
  EXPECT_THROW(build_plan(parse({{"autotp_size", 2}}), tiny(), 0), Error);
}
