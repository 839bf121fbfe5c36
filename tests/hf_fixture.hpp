#pragma once
// The transformers fixtures of tests/fixtures/model (written by make_hf_fixtures.py): the same
// Phi3ForCausalLM parameters, batch, logits, loss and gradients, replayed through Phi3Model on
// any backend. The CPU test holds them to fp32 accuracy, the CUDA test to bf16's.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "model/phi3_model.hpp"
#include "model_test_util.hpp"

namespace autotp::test {

// The source tree: AUTOTP_TEST_SOURCE_DIR when the binaries run from a copy of the tree (the
// GPU machine), else where they were built from.
inline std::string source_dir() {
  const char* e = std::getenv("AUTOTP_TEST_SOURCE_DIR");
  return e && *e ? e : AUTOTP_SOURCE_DIR;
}

// A minimal safetensors reader (F32 and I32 only), so that these tests do not depend on io.
struct Tensors {
  std::map<std::string, std::vector<float>> f32;
  std::map<std::string, std::vector<int32_t>> i32;
};

inline Tensors read_safetensors(const std::string& path) {
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

// One fixture replayed: our numbers beside transformers'.
struct HfComparison {
  float loss = 0, ref_loss = 0;
  double logits_err = 0;                                 // rel_err of the logits
  std::vector<std::pair<std::string, double>> grad_err;  // rel_err per parameter
  double worst_grad_err() const {
    double w = 0;
    for (auto& g : grad_err) w = std::max(w, g.second);
    return w;
  }
};

// Loads fixture `name` into a TP-1 model on `be` (comm: a group of one that can address its
// memory), runs forward and backward once.
inline HfComparison replay_hf_fixture(const std::string& name, Backend& be, Comm& comm) {
  const std::string dir = source_dir() + "/tests/fixtures/model/" + name;
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
  Phi3Model m(cfg, plan, 0, comm, be);
  HfComparison r;
  for (auto& slot : m.layout().slots) {
    auto it = ref.f32.find("param/" + slot.name);
    if (it == ref.f32.end() || it->second.size() != slot.numel) {
      ADD_FAILURE() << name << ": the fixture lacks parameter " << slot.name << " of " << slot.numel
                    << " values";
      return r;
    }
    m.set_param_shard(slot.name, it->second.data());
  }
  m.params_changed();
  const auto& ids = ref.i32.at("input_ids");
  const auto& targets = ref.i32.at("targets");
  const int B = 2, T = int(ids.size()) / B;

  m.zero_grad();
  r.loss = m.forward(ids.data(), targets.data(), B, T);
  r.ref_loss = ref.f32.at("loss")[0];
  r.logits_err = rel_err(m.gather_logits(), ref.f32.at("logits"));
  m.backward(1.0f);
  for (auto& slot : m.layout().slots)
    r.grad_err.emplace_back(slot.name,
                            rel_err(m.grad_shard(slot.name), ref.f32.at("grad/" + slot.name)));
  return r;
}

}  // namespace autotp::test
