// Hugging Face checkpoint -> autotp model file, one tensor at a time.
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "core/error.hpp"
#include "io/convert_common.hpp"
#include "io/hf_checkpoint.hpp"
#include "io/model_file.hpp"

namespace autotp {

namespace {

const std::string kEncoderPrefix = "model.embed_tokens_extend.";

// Phi-4-multimodal keeps each text linear as a PEFT LoRA layer:
//   <m>.base_layer.weight [out, in], <m>.lora_A.<adapter>.weight [r, in],
//   <m>.lora_B.<adapter>.weight [out, r]         (adapters "vision" and "speech")
struct LoraName {
  std::string target, adapter;  // target: "<m>.weight", the parameter the adapter updates
  bool is_a = false;
};

std::optional<LoraName> parse_lora(const std::string& name) {
  for (bool is_a : {true, false}) {
    const std::string key = is_a ? ".lora_A." : ".lora_B.", suffix = ".weight";
    size_t p = name.find(key);
    if (p == std::string::npos) continue;
    std::string rest = name.substr(p + key.size());  // "<adapter>.weight"
    if (rest.size() <= suffix.size() ||
        rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) != 0)
      return std::nullopt;
    return LoraName{name.substr(0, p) + suffix, rest.substr(0, rest.size() - suffix.size()), is_a};
  }
  return std::nullopt;
}

struct LoraPair {
  std::string a, b;  // file tensor names; empty = absent
};

}  // namespace

std::vector<std::string> convert_hf_to_h5(const std::string& hf_dir, const std::string& h5_path,
                                          const ConvertOptions& opt) {
  check(opt.merge_lora.empty() || opt.merge_lora == "vision" || opt.merge_lora == "speech",
        "--merge_lora '", opt.merge_lora, "': Phi-4-multimodal's adapters are vision and speech");
  const std::optional<DType> out_dtype = parse_out_dtype(opt.out_dtype);
  HfCheckpoint ck(hf_dir);
  const ModelConfig& cfg = ck.config();
  std::vector<std::string> notes;

  // 1. Map every tensor in the files to a parameter of the model, or account for it.
  const std::vector<ParamDesc> params = cfg.parameters();
  std::set<std::string> expected;
  for (auto& p : params) expected.insert(p.name);
  std::map<std::string, std::string> source;  // parameter name -> tensor name in the files
  std::map<std::string, std::map<std::string, LoraPair>> lora;  // target -> adapter -> A, B
  std::vector<std::string> unknown;
  uint64_t encoder_count = 0, encoder_bytes = 0, stripped = 0;
  bool dropped_lm_head = false;
  for (auto& name : ck.names()) {
    if (name.compare(0, kEncoderPrefix.size(), kEncoderPrefix) == 0) {
      ++encoder_count;
      encoder_bytes += ck.at(name).nbytes();
      continue;
    }
    if (auto l = parse_lora(name)) {
      if (!expected.count(l->target)) {
        unknown.push_back(name);
        continue;
      }
      LoraPair& pair = lora[l->target][l->adapter];
      (l->is_a ? pair.a : pair.b) = name;
      continue;
    }
    std::string canon = name;
    size_t p = canon.find(".base_layer.");
    if (p != std::string::npos) {
      canon.erase(p, std::string(".base_layer").size());
      ++stripped;
    }
    if (expected.count(canon)) {
      auto [it, fresh] = source.emplace(canon, name);
      check(fresh, hf_dir, ": both '", it->second, "' and '", name, "' hold parameter ", canon,
            ": the checkpoint is ambiguous");
    } else if (canon == "lm_head.weight" && cfg.tie_word_embeddings) {
      dropped_lm_head = true;
    } else {
      unknown.push_back(name);
    }
  }
  check(unknown.empty(), hf_dir, ": ", unknown.size(), " tensor(s) are not parameters of a ",
        cfg.model_type, " model with this config.json (", cfg.num_hidden_layers, " layers, ",
        cfg.tie_word_embeddings ? "tied" : "untied", " embeddings): ", first_names(unknown),
        ". Is config.json from another model?");

  // 2. Every parameter present, with the shape and a dtype the model needs.
  std::vector<std::string> missing;
  for (auto& p : params)
    if (!source.count(p.name)) missing.push_back(p.name);
  check(missing.empty(), hf_dir, ": missing tensor ", first_names(missing),
        ": the checkpoint is incomplete or belongs to another model; re-download it");
  for (auto& p : params) {
    const TensorInfo& t = ck.at(source[p.name]);
    check(t.supported, ck.file_of(t.name), ": tensor '", t.name, "' has dtype ", t.stored_dtype,
          "; a model parameter must be F32, BF16 or F16");
    check(t.shape == p.shape, ck.file_of(t.name), ": tensor '", t.name, "' has shape ",
          shape_string(t.shape), " but config.json implies ", shape_string(p.shape),
          " for it: the config and the weights belong to different models");
  }

  // 3. LoRA adapters: dropped (as transformers' converter does), or one merged on request.
  double lora_alpha = 0;
  int64_t lora_r = 0;
  if (!opt.merge_lora.empty()) {
    const std::string key = opt.merge_lora + "_lora";
    const nlohmann::json& lc = cfg.raw.contains(key) ? cfg.raw[key] : nlohmann::json();
    check(lc.is_object() && lc.contains("r") && lc["r"].is_number_integer() &&
              lc.contains("lora_alpha") && lc["lora_alpha"].is_number(),
          hf_dir, "/config.json: no '", key, "' object with r and lora_alpha, so the ",
          opt.merge_lora, " adapter cannot be merged (is this a Phi-4-multimodal checkpoint?)");
    lora_r = lc["r"].get<int64_t>();
    lora_alpha = lc["lora_alpha"].get<double>();
    check(lora_r > 0, hf_dir, "/config.json: ", key, ".r must be positive");
  }
  std::map<std::string, uint64_t> dropped_adapters;  // adapter -> tensor count
  int64_t merged = 0;
  for (auto& [target, adapters] : lora) {
    for (auto& [adapter, pair] : adapters) {
      if (adapter != opt.merge_lora) {
        dropped_adapters[adapter] += (pair.a.empty() ? 0 : 1) + (pair.b.empty() ? 0 : 1);
        continue;
      }
      check(!pair.a.empty() && !pair.b.empty(), hf_dir, ": LoRA adapter '", adapter, "' of ",
            target, " has only ", pair.a.empty() ? pair.b : pair.a,
            "; merging needs both lora_A and lora_B: the checkpoint is incomplete");
      const TensorInfo &a = ck.at(pair.a), &b = ck.at(pair.b), &w = ck.at(source[target]);
      const std::vector<int64_t> want_a = {lora_r, w.shape[1]}, want_b = {w.shape[0], lora_r};
      check(a.shape == want_a && b.shape == want_b, hf_dir, ": LoRA '", adapter, "' of ", target,
            ": ", pair.a, " is ", shape_string(a.shape), " and ", pair.b, " is ",
            shape_string(b.shape), "; with r = ", lora_r, " from config.json they must be ",
            shape_string(want_a), " and ", shape_string(want_b));
      check(a.supported && b.supported, hf_dir, ": LoRA tensors ", pair.a, " / ", pair.b,
            " have dtype ", a.stored_dtype, " / ", b.stored_dtype, "; expected F32, BF16 or F16");
      ++merged;
    }
  }
  if (!opt.merge_lora.empty())
    check(merged > 0, hf_dir, ": --merge_lora ", opt.merge_lora, ": the checkpoint has no ",
          "lora_A/lora_B.", opt.merge_lora, " tensors");

  // 4. Write in ModelConfig::parameters() order, one tensor in memory at a time.
  ModelFileWriter writer(h5_path, retag_config_dtype(ck.config_text(), out_dtype, notes));
  std::vector<char> raw, conv;
  std::vector<float> wf, af, bf;
  uint64_t written = 0;
  for (auto& p : params) {
    const TensorInfo& t = ck.at(source[p.name]);
    const DType dst = out_dtype.value_or(t.dtype);
    const size_t n = size_t(t.numel());
    raw.resize(t.nbytes());
    ck.read(t.name, raw.data());
    const void* data = raw.data();
    auto it = lora.find(p.name);
    if (it != lora.end() && it->second.count(opt.merge_lora)) {
      // Merge in fp32, then round once to the output dtype.
      const LoraPair& pair = it->second.at(opt.merge_lora);
      const TensorInfo &a = ck.at(pair.a), &b = ck.at(pair.b);
      wf.resize(n);
      convert(raw.data(), t.dtype, wf.data(), DType::F32, n);
      for (auto [info, vec] : {std::pair{&a, &af}, std::pair{&b, &bf}}) {
        std::vector<char> tmp(info->nbytes());
        ck.read(info->name, tmp.data());
        vec->resize(size_t(info->numel()));
        convert(tmp.data(), info->dtype, vec->data(), DType::F32, vec->size());
      }
      lora_merge(wf.data(), af.data(), bf.data(), p.shape[0], p.shape[1], lora_r, lora_alpha);
      conv.resize(n * dtype_size(dst));
      convert(wf.data(), DType::F32, conv.data(), dst, n);
      data = conv.data();
    } else if (dst != t.dtype) {
      conv.resize(n * dtype_size(dst));
      convert(raw.data(), t.dtype, conv.data(), dst, n);
      data = conv.data();
    }
    writer.write(p.name, dst, p.shape, data);
    written += n * dtype_size(dst);
  }
  writer.finish();

  if (encoder_count)
    notes.push_back("skipped " + std::to_string(encoder_count) +
                    " vision/audio encoder tensors under " + kEncoderPrefix + " (" +
                    byte_string(encoder_bytes) + "): autotp trains the text model");
  if (stripped)
    notes.push_back("renamed " + std::to_string(stripped) +
                    " PEFT base weights (<module>.base_layer.weight -> <module>.weight)");
  if (merged) {
    char formula[96];
    std::snprintf(formula, sizeof formula, "W += (%g / %lld) * B @ A", lora_alpha,
                  static_cast<long long>(lora_r));
    notes.push_back("merged LoRA adapter '" + opt.merge_lora + "' into " + std::to_string(merged) +
                    " weights: " + formula + " in fp32, rounded once to the weight's dtype");
  }
  for (auto& [adapter, count] : dropped_adapters)
    notes.push_back("dropped " + std::to_string(count) + " LoRA tensors of adapter '" + adapter +
                    "' (pass --merge_lora " + adapter + " to merge it instead)");
  if (dropped_lm_head)
    notes.push_back(
        "dropped lm_head.weight: config.json ties it to model.embed_tokens.weight "
        "(tie_word_embeddings = true)");
  notes.push_back("wrote " + std::to_string(params.size()) + " tensors (" + byte_string(written) +
                  ") to " + h5_path);
  return notes;
}

}  // namespace autotp
