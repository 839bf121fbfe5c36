// Hugging Face <-> HDF5 conversion on the three tiny fixtures (Phi-4, Phi-4-mini sharded,
// Phi-4-multimodal with PEFT names): byte-identical round trips, the LoRA merge against torch,
// and one clear error for each way a checkpoint can be wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/hf_checkpoint.hpp"
#include "io/model_file.hpp"
#include "io_test_util.hpp"
#include "test_util.hpp"

using namespace autotp;
using iotest::fixture;
using iotest::read_bytes;
using iotest::TempDir;
using iotest::Tensor;

namespace {

bool any_has(const std::vector<std::string>& notes, const std::string& part) {
  for (auto& n : notes)
    if (has(n, part)) return true;
  return false;
}

std::string tensor_bytes(const HfCheckpoint& ck, const std::string& name) {
  std::string b(ck.at(name).nbytes(), '\0');
  ck.read(name, b.data());
  return b;
}

// The name a parameter has in the original file (Phi-4-multimodal keeps PEFT's base_layer).
std::string original_name(const HfCheckpoint& orig, const std::string& name) {
  if (orig.find(name)) return name;
  return name.substr(0, name.size() - 7) + ".base_layer.weight";
}

// Every parameter of `back` equals the original's: name, dtype, shape, bytes.
void expect_same_tensors(const HfCheckpoint& orig, const HfCheckpoint& back) {
  const auto params = orig.config().parameters();
  ASSERT_EQ(back.names().size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].name;
    const TensorInfo* b = back.find(name);
    ASSERT_NE(b, nullptr) << name;
    const TensorInfo& o = orig.at(original_name(orig, name));
    EXPECT_EQ(b->dtype, o.dtype) << name;
    EXPECT_EQ(b->shape, o.shape) << name;
    EXPECT_EQ(tensor_bytes(back, name), tensor_bytes(orig, o.name)) << name;
  }
}

}  // namespace

TEST(Convert, RoundTripIsByteIdenticalForAllThreeFixtures) {
  TempDir tmp;
  for (auto model : {"phi4_tiny", "mini_tiny", "mm_tiny"}) {
    SCOPED_TRACE(model);
    const std::string h5 = tmp / (std::string(model) + ".h5"), out = tmp / model;
    convert_hf_to_h5(fixture(model), h5, {});
    auto notes = convert_h5_to_hf(h5, out, {});
    EXPECT_TRUE(any_has(notes, "in 1 file(s)"));
    EXPECT_EQ(read_bytes(out + "/config.json"), read_bytes(fixture(model) + "/config.json"));
    HfCheckpoint orig(fixture(model)), back(out);
    expect_same_tensors(orig, back);
    // Parameters in Hugging Face order, and the file has nothing else.
    SafetensorsReader file(out + "/model.safetensors");
    const auto params = orig.config().parameters();
    ASSERT_EQ(file.tensors().size(), params.size());
    for (size_t i = 0; i < params.size(); ++i) EXPECT_EQ(file.tensors()[i].name, params[i].name);
    EXPECT_EQ(file.metadata().at("format"), "pt");
    // For the plain checkpoints the two tensor sets are the same.
    if (std::string(model) != "mm_tiny") {
      EXPECT_EQ(orig.names().size(), back.names().size());
    }
  }
}

TEST(Convert, ShardedOutputWithIndexAboveMaxShardSize) {
  TempDir tmp;
  convert_hf_to_h5(fixture("phi4_tiny"), tmp / "m.h5", {});
  ConvertOptions opt;
  opt.max_shard_bytes = 10000;  // tensors are 4 KiB (embed, lm_head, qkv, ...) or 64 bytes
  auto notes = convert_h5_to_hf(tmp / "m.h5", tmp / "out", opt);
  auto index = nlohmann::json::parse(read_bytes(tmp / "out/model.safetensors.index.json"));
  HfCheckpoint orig(fixture("phi4_tiny")), back(tmp / "out");
  expect_same_tensors(orig, back);
  uint64_t total = 0;
  std::set<std::string> files;
  for (auto& name : orig.names()) {
    total += orig.at(name).nbytes();
    ASSERT_TRUE(index["weight_map"].contains(name)) << name;
    files.insert(index["weight_map"][name].get<std::string>());
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), orig.names().size());
  ASSERT_GT(files.size(), 2u);
  for (auto& f : files) {
    EXPECT_TRUE(has(f, "-of-0000" + std::to_string(files.size()) + ".safetensors")) << f;
    // Greedy packing: no shard above the limit unless it holds a single larger tensor.
    SafetensorsReader r(tmp / "out/" + f);
    uint64_t size = 0;
    for (auto& t : r.tensors()) size += t.nbytes();
    EXPECT_TRUE(size <= opt.max_shard_bytes || r.tensors().size() == 1) << f;
  }
  EXPECT_FALSE(iotest::fs::exists(tmp / "out/model.safetensors"));

  // A stale single-file checkpoint in the way would be loaded instead of the shards.
  iotest::fs::create_directories(tmp / "stale");
  iotest::write_bytes(tmp / "stale/model.safetensors", "old");
  std::string msg = error_of([&] { convert_h5_to_hf(tmp / "m.h5", tmp / "stale", opt); });
  EXPECT_TRUE(has(msg, "already holds model.safetensors")) << msg;
}

TEST(Convert, MultimodalNamesAdaptersAndEncodersAreAccountedFor) {
  TempDir tmp;
  auto notes = convert_hf_to_h5(fixture("mm_tiny"), tmp / "m.h5", {});
  // 2 layers x 4 adapted linears; each has lora_A and lora_B per adapter.
  EXPECT_TRUE(any_has(notes, "renamed 8 PEFT base weights")) << notes[0];
  EXPECT_TRUE(any_has(notes, "dropped 16 LoRA tensors of adapter 'speech'"));
  EXPECT_TRUE(any_has(notes, "dropped 16 LoRA tensors of adapter 'vision'"));
  // Two bf16 tensors (16x8 and 16) and one int64 counter: 256 + 32 + 8 bytes.
  EXPECT_TRUE(any_has(notes,
                      "skipped 3 vision/audio encoder tensors under "
                      "model.embed_tokens_extend. (296 bytes)"));
  ModelFileReader r(tmp / "m.h5");
  EXPECT_EQ(r.tensors().size(), r.config().parameters().size());
  EXPECT_EQ(r.config().model_type, "phi4mm");
}

// --merge_lora vision against torch's W + (alpha/r) * B @ A (fp32, rounded once to bf16).
// Tolerance: our fp32 dot products over r may sum in a different order than torch's matmul, so
// an element may differ by one bf16 ulp where the fp32 value sits at a rounding boundary; we
// allow that for at most 1% of the elements. Independently of torch, every element must be the
// correctly rounded exact (double) value within 0.5 bf16 ulp plus the fp32 error (1e-5 relative).
TEST(Convert, LoraMergeMatchesTorch) {
  TempDir tmp;
  ConvertOptions opt;
  opt.merge_lora = "vision";
  auto notes = convert_hf_to_h5(fixture("mm_tiny"), tmp / "merged.h5", opt);
  EXPECT_TRUE(any_has(notes, "merged LoRA adapter 'vision' into 8 weights"));
  EXPECT_TRUE(any_has(notes, "dropped 16 LoRA tensors of adapter 'speech'"));
  ModelFileReader r(tmp / "merged.h5");
  SafetensorsReader torch_merged(fixture("mm_tiny_merged_vision.safetensors"));
  HfCheckpoint orig(fixture("mm_tiny"));
  const double scale = 6.0 / 4.0;  // vision_lora: lora_alpha 6, r 4
  ASSERT_EQ(torch_merged.tensors().size(), 8u);
  int64_t total = 0, off_by_one = 0, changed = 0;
  for (auto& t : torch_merged.tensors()) {
    SCOPED_TRACE(t.name);
    const size_t n = size_t(t.numel());
    std::vector<uint16_t> want(n), got(n), w(n);
    torch_merged.read(t, want.data());
    ASSERT_EQ(r.at(t.name).dtype, DType::BF16);
    r.read(t.name, DType::BF16, got.data());
    const std::string module = t.name.substr(0, t.name.size() - 7);
    orig.read(module + ".base_layer.weight", w.data());
    const TensorInfo& ai = orig.at(module + ".lora_A.vision.weight");
    const TensorInfo& bi = orig.at(module + ".lora_B.vision.weight");
    std::vector<uint16_t> a(size_t(ai.numel())), b(size_t(bi.numel()));
    orig.read(ai.name, a.data());
    orig.read(bi.name, b.data());
    const int64_t out = t.shape[0], in = t.shape[1], rank = ai.shape[0];
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) {
        const size_t k = size_t(o * in + i);
        ++total;
        if (got[k] != w[k]) ++changed;
        if (got[k] != want[k]) {
          ++off_by_one;
          ASSERT_EQ(std::abs(int(got[k]) - int(want[k])), 1) << "element " << k;
        }
        double exact = bf16_to_f32(w[k]);
        double dot = 0;
        for (int64_t j = 0; j < rank; ++j)
          dot += double(bf16_to_f32(b[size_t(o * rank + j)])) *
                 double(bf16_to_f32(a[size_t(j * in + i)]));
        exact += scale * dot;
        const double ulp = std::ldexp(1.0, std::ilogb(exact) - 7);  // bf16: 8 significant bits
        ASSERT_LE(std::abs(double(bf16_to_f32(got[k])) - exact), 0.5 * ulp + 1e-5 * std::abs(exact))
            << "element " << k;
      }
    }
  }
  EXPECT_LE(off_by_one * 100, total) << off_by_one << " of " << total << " differ by one ulp";
  EXPECT_GT(changed * 10, total * 9);  // the merge did change (almost) every weight
  // Untouched parameters are the base weights, bit for bit.
  std::vector<uint16_t> norm(32), norm_orig(32);
  r.read("model.norm.weight", DType::BF16, norm.data());
  orig.read("model.norm.weight", norm_orig.data());
  EXPECT_EQ(norm, norm_orig);
}

TEST(Convert, DtypeConversionBothWays) {
  TempDir tmp;
  ConvertOptions f32;
  f32.out_dtype = "F32";
  auto notes = convert_hf_to_h5(fixture("phi4_tiny"), tmp / "f32.h5", f32);
  EXPECT_TRUE(any_has(notes, "torch_dtype \"bfloat16\" -> \"float32\""));
  ModelFileReader r(tmp / "f32.h5");
  EXPECT_EQ(nlohmann::json::parse(r.config_text())["torch_dtype"], "float32");
  HfCheckpoint orig(fixture("phi4_tiny"));
  for (auto& t : r.tensors()) {
    ASSERT_EQ(t.dtype, DType::F32);
    std::vector<float> got(size_t(t.numel())), want(size_t(t.numel()));
    r.read(t.name, DType::F32, got.data());
    std::string raw = tensor_bytes(orig, t.name);
    convert(raw.data(), DType::BF16, want.data(), DType::F32, want.size());
    ASSERT_EQ(got, want) << t.name;
  }
  // Back to BF16: the original bytes again (bf16 -> f32 -> bf16 is exact).
  ConvertOptions bf16;
  bf16.out_dtype = "bf16";
  convert_h5_to_hf(tmp / "f32.h5", tmp / "back", bf16);
  expect_same_tensors(orig, HfCheckpoint(tmp / "back"));
  EXPECT_EQ(nlohmann::json::parse(read_bytes(tmp / "back/config.json"))["torch_dtype"], "bfloat16");
  ConvertOptions bad;
  bad.out_dtype = "F64";
  std::string msg = error_of([&] { convert_hf_to_h5(fixture("phi4_tiny"), tmp / "x.h5", bad); });
  EXPECT_TRUE(has(msg, "--dtype 'F64'")) << msg;
}

// --- one clear error for each way a checkpoint can be wrong --------------------------------------

TEST(ConvertErrors, MissingTensorIsNamedAndNothingIsWritten) {
  TempDir tmp;
  const std::string victim = "model.layers.1.mlp.down_proj.weight";
  iotest::copy_checkpoint(fixture("phi4_tiny"), tmp / "ck",
                          [&](Tensor& t) { t.keep = t.info.name != victim; });
  std::string msg = error_of([&] { convert_hf_to_h5(tmp / "ck", tmp / "out.h5", {}); });
  EXPECT_TRUE(has(msg, tmp / "ck") && has(msg, "missing tensor " + victim)) << msg;
  EXPECT_FALSE(iotest::fs::exists(tmp / "out.h5"));
  EXPECT_FALSE(iotest::fs::exists(tmp / "out.h5.tmp"));
}

TEST(ConvertErrors, WrongShapeNamesTensorExpectedAndFound) {
  TempDir tmp;
  iotest::copy_checkpoint(fixture("phi4_tiny"), tmp / "ck", [&](Tensor& t) {
    if (t.info.name == "lm_head.weight") t.info.shape = {32, 64};
  });
  std::string msg = error_of([&] { convert_hf_to_h5(tmp / "ck", tmp / "out.h5", {}); });
  EXPECT_TRUE(has(msg, "'lm_head.weight' has shape [32, 64]") &&
              has(msg, "config.json implies [64, 32]"))
      << msg;
}

TEST(ConvertErrors, ParameterWithAnUnexpectedDtype) {
  TempDir tmp;
  // model.norm.weight (bf16 [32], 64 bytes) relabelled as int64 [8] in a copy of the header.
  iotest::fs::create_directories(tmp / "ck");
  iotest::fs::copy_file(fixture("phi4_tiny/config.json"), tmp / "ck/config.json");
  std::string bytes = read_bytes(fixture("phi4_tiny/model.safetensors"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | uint8_t(bytes[size_t(i)]);
  auto header = nlohmann::ordered_json::parse(bytes.substr(8, n));
  header["model.norm.weight"]["dtype"] = "I64";
  header["model.norm.weight"]["shape"] = {8};
  iotest::write_raw_safetensors(tmp / "ck/model.safetensors", header.dump(), bytes.substr(8 + n));
  std::string msg = error_of([&] { convert_hf_to_h5(tmp / "ck", tmp / "out.h5", {}); });
  EXPECT_TRUE(has(msg, "'model.norm.weight'") && has(msg, "I64")) << msg;
}

TEST(ConvertErrors, UnknownTensorsAreListed) {
  TempDir tmp;
  iotest::copy_checkpoint(fixture("phi4_tiny"), tmp / "ck", [&](Tensor& t) {
    if (t.info.name == "model.layers.0.self_attn.o_proj.weight")
      t.info.name = "model.layers.0.self_attn.q_proj.weight";  // a Llama-style name
    if (t.info.name == "model.layers.1.self_attn.o_proj.weight")
      t.info.name = "model.layers.7.self_attn.o_proj.weight";  // a layer the config lacks
  });
  std::string msg = error_of([&] { convert_hf_to_h5(tmp / "ck", tmp / "out.h5", {}); });
  EXPECT_TRUE(has(msg, "2 tensor(s) are not parameters") &&
              has(msg, "model.layers.0.self_attn.q_proj.weight") &&
              has(msg, "model.layers.7.self_attn.o_proj.weight"))
      << msg;
}

TEST(ConvertErrors, TiedCheckpointWithLmHeadDropsItWithANote) {
  TempDir tmp;
  iotest::copy_checkpoint(fixture("mini_tiny"), tmp / "ck", [](Tensor&) {});
  {  // add lm_head.weight to the single-file copy
    SafetensorsReader r(tmp / "ck/model.safetensors");
    std::vector<TensorInfo> ts = r.tensors();
    TensorInfo lm = r.at("model.embed_tokens.weight");
    lm.name = "lm_head.weight";
    ts.push_back(lm);
    SafetensorsWriter w(tmp / "ck/with_lm.safetensors", ts, {});
    std::string buf;
    for (auto& t : r.tensors()) {
      buf.resize(t.nbytes());
      r.read(t, buf.data());
      w.write(t.name, buf.data());
    }
    buf.resize(lm.nbytes());
    r.read(r.at("model.embed_tokens.weight"), buf.data());
    w.write("lm_head.weight", buf.data());
    w.finish();
  }
  iotest::fs::rename(tmp / "ck/with_lm.safetensors", tmp / "ck/model.safetensors");
  auto notes = convert_hf_to_h5(tmp / "ck", tmp / "out.h5", {});
  EXPECT_TRUE(any_has(notes, "dropped lm_head.weight"));
  ModelFileReader r(tmp / "out.h5");
  EXPECT_EQ(r.find("lm_head.weight"), nullptr);
}

TEST(ConvertErrors, LoraMergeProblems) {
  TempDir tmp;
  ConvertOptions opt;
  opt.merge_lora = "vision";
  std::string msg = error_of([&] { convert_hf_to_h5(fixture("phi4_tiny"), tmp / "o.h5", opt); });
  EXPECT_TRUE(has(msg, "no 'vision_lora' object")) << msg;
  opt.merge_lora = "audio";
  msg = error_of([&] { convert_hf_to_h5(fixture("mm_tiny"), tmp / "o.h5", opt); });
  EXPECT_TRUE(has(msg, "--merge_lora 'audio'")) << msg;
  opt.merge_lora = "vision";
  const std::string victim = "model.layers.1.mlp.down_proj.lora_B.vision.weight";
  iotest::copy_checkpoint(fixture("mm_tiny"), tmp / "ck",
                          [&](Tensor& t) { t.keep = t.info.name != victim; });
  msg = error_of([&] { convert_hf_to_h5(tmp / "ck", tmp / "o.h5", opt); });
  EXPECT_TRUE(has(msg, "model.layers.1.mlp.down_proj.lora_A.vision.weight") &&
              has(msg, "needs both lora_A and lora_B"))
      << msg;
  // Without the merge the incomplete adapter is simply dropped.
  EXPECT_NO_THROW(convert_hf_to_h5(tmp / "ck", tmp / "o.h5", {}));
}

TEST(ConvertErrors, BrokenDirectories) {
  TempDir tmp;
  // Sharded checkpoint with one shard missing.
  iotest::fs::copy(fixture("mini_tiny"), tmp / "ck");
  iotest::fs::remove(tmp / "ck/model-00002-of-00002.safetensors");
  std::string msg = error_of([&] { HfCheckpoint ck(tmp / "ck"); });
  EXPECT_TRUE(has(msg, "model-00002-of-00002.safetensors") && has(msg, "re-download")) << msg;
  // The index puts a tensor in the wrong shard.
  iotest::fs::copy_file(fixture("mini_tiny/model-00002-of-00002.safetensors"),
                        tmp / "ck/model-00002-of-00002.safetensors");
  auto index = nlohmann::json::parse(read_bytes(tmp / "ck/model.safetensors.index.json"));
  index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  iotest::write_bytes(tmp / "ck/model.safetensors.index.json", index.dump());
  msg = error_of([&] { HfCheckpoint ck(tmp / "ck"); });
  EXPECT_TRUE(has(msg, "'model.norm.weight'") && has(msg, "does not hold it")) << msg;
  // No weights, no config, not a directory.
  iotest::fs::create_directories(tmp / "empty");
  iotest::fs::copy_file(fixture("phi4_tiny/config.json"), tmp / "empty/config.json");
  msg = error_of([&] { HfCheckpoint ck(tmp / "empty"); });
  EXPECT_TRUE(has(msg, "no model.safetensors or model.safetensors.index.json")) << msg;
  iotest::fs::remove(tmp / "empty/config.json");
  msg = error_of([&] { HfCheckpoint ck(tmp / "empty"); });
  EXPECT_TRUE(has(msg, "config.json: missing")) << msg;
  msg = error_of([&] { HfCheckpoint ck(fixture("phi4_tiny/config.json")); });
  EXPECT_TRUE(has(msg, "not a directory")) << msg;
}

TEST(ConvertErrors, ModelFileWithForeignTensorsIsRefused) {
  TempDir tmp;
  convert_hf_to_h5(fixture("phi4_tiny"), tmp / "m.h5", {});
  {
    ModelFileReader r(tmp / "m.h5");
    ModelFileWriter w(tmp / "extra.h5", r.config_text());
    std::vector<char> buf;
    for (auto& t : r.tensors()) {
      buf.resize(size_t(t.numel()) * dtype_size(t.dtype));
      r.read(t.name, t.dtype, buf.data());
      w.write(t.name, t.dtype, t.shape, buf.data());
    }
    float x = 0;
    w.write("optimizer.step", DType::F32, {1}, &x);
    w.finish();
  }
  std::string msg = error_of([&] { convert_h5_to_hf(tmp / "extra.h5", tmp / "out", {}); });
  EXPECT_TRUE(has(msg, "optimizer.step") && has(msg, "not parameters")) << msg;
  EXPECT_FALSE(iotest::fs::exists(tmp / "out/model.safetensors"));
}

TEST(Convert, ParseByteSize) {
  EXPECT_EQ(parse_byte_size("5GB"), 5000000000ull);
  EXPECT_EQ(parse_byte_size("500MiB"), 500ull << 20);
  EXPECT_EQ(parse_byte_size("123"), 123ull);
  EXPECT_EQ(parse_byte_size("2 kb"), 2000ull);
  EXPECT_TRUE(has(error_of([] { parse_byte_size("5 parsecs"); }), "unknown unit"));
  EXPECT_TRUE(has(error_of([] { parse_byte_size("GB"); }), "expected a number"));
}
