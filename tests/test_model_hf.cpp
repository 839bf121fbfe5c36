// The model against transformers' Phi3ForCausalLM (fp32, eager attention): logits, loss and
// every parameter's gradient, from fixtures written by tests/fixtures/model/make_hf_fixtures.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "model/phi3_model.hpp"
#include "model_test_util.hpp"

namespace autotp {
using autotp::test::rel_err;

namespace {

// A minimal safetensors reader (F32 and I32 only), so that this test does not depend on io.
struct Tensors {
  std::map<std::string, std::vector<float>> f32;
  std::map<std::string, std::vector<int32_t>> i32;
};

Tensors read_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(bool(f)) << path;
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), std::streamsize(n));
  std::vector<char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Tensors t;
  const nlohmann::json index = nlohmann::json::parse(header);
  for (auto& [name, info] : index.items()) {
    if (name == "__metadata__") continue;
    size_t b = info["data_offsets"][0], e = info["data_offsets"][1];
    std::string dtype = info["dtype"];
    if (dtype == "F32") {
      auto& v = t.f32[name];
      v.resize((e - b) / 4);
      std::memcpy(v.data(), data.data() + b, e - b);
    } else if (dtype == "I32") {
      auto& v = t.i32[name];
      v.resize((e - b) / 4);
      std::memcpy(v.data(), data.data() + b, e - b);
    } else {
      ADD_FAILURE() << path << ": unexpected dtype " << dtype << " of " << name;
    }
  }
  return t;
}

void compare_with_hf(const std::string& name) {
  const std::string dir = std::string(AUTOTP_SOURCE_DIR) + "/tests/fixtures/model/" + name;
  ModelConfig cfg = ModelConfig::from_file(dir + "/config.json");
  Tensors ref = read_safetensors(dir + "/tensors.safetensors");
  PartitionPlan plan;
  for (auto& d : cfg.parameters()) {
    ShardSpec s;
    s.name = d.name;
    s.shape = d.shape;
    s.parts = {d.shape[0]};
    plan.params.push_back(s);
  }
  auto be = make_cpu_backend();
  auto comm = make_mpi_comm(MPI_COMM_SELF);
  Phi3Model m(cfg, plan, 0, *comm, *be);
  for (auto& slot : m.layout().slots) {
    auto it = ref.f32.find("param/" + slot.name);
    ASSERT_NE(it, ref.f32.end()) << slot.name;
    ASSERT_EQ(it->second.size(), slot.numel) << slot.name;
    m.set_param_shard(slot.name, it->second.data());
  }
  const auto& ids = ref.i32.at("input_ids");
  const auto& targets = ref.i32.at("targets");
  const int B = 2, T = int(ids.size()) / B;

  m.zero_grad();
  float loss = m.forward(ids.data(), targets.data(), B, T);
  const float ref_loss = ref.f32.at("loss")[0];
  EXPECT_NEAR(loss, ref_loss, 1e-5 * std::fabs(ref_loss)) << name;
  EXPECT_LT(rel_err(m.gather_logits(), ref.f32.at("logits")), 1e-5) << name << " logits";
  m.backward(1.0f);
  double worst = 0;
  for (auto& slot : m.layout().slots) {
    double e = rel_err(m.grad_shard(slot.name), ref.f32.at("grad/" + slot.name));
    EXPECT_LT(e, 1e-5) << name << " gradient of " << slot.name;
    worst = std::max(worst, e);
  }
  std::printf("%s: loss %.7f (transformers %.7f), worst gradient relative error %.2e\n",
              name.c_str(), loss, ref_loss, worst);
}

TEST(ModelHF, TiedShortFactors) {
  compare_with_hf("tied_short");
}
TEST(ModelHF, UntiedShortFactors) {
  compare_with_hf("untied_short");
}
TEST(ModelHF, UntiedLongFactors) {
  compare_with_hf("untied_long");
}

}  // namespace
}  // namespace autotp
