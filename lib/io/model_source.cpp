#include "io/model_source.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>

#include "core/error.hpp"
#include "core/fnv1a.hpp"
#include "core/strings.hpp"
#include "dist/mpi_main.hpp"
#include "io/hf_checkpoint.hpp"

namespace autotp {

namespace fs = std::filesystem;

namespace {

const std::string kFolderLayout =
    "a model folder holds a Hugging Face config.json, with model.safetensors or "
    "model.safetensors.index.json and its shards for the weights";

bool has_weight_files(const fs::path& d) {
  return fs::exists(d / "model.safetensors") || fs::exists(d / "model.safetensors.index.json");
}

// "phi4_tiny" for "x/phi4_tiny/" as for "x/phi4_tiny".
std::string folder_name(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  std::string n = p.filename().string();
  return n.empty() || n == "." || n == ".." ? std::string("model") : n;
}

// The files a conversion reads, in a stable order.
std::vector<fs::path> source_files(const fs::path& d) {
  std::vector<fs::path> out;
  for (auto& e : fs::directory_iterator(d)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() &&
        (n == "config.json" || n == "model.safetensors.index.json" || ends_with(n, ".safetensors")))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string hex16(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// "<folder>[.<merge_lora>]." : every conversion of one folder starts so, then 16 hex digits.
std::string conversion_prefix(const std::string& hf_dir, const std::string& merge_lora) {
  return folder_name(hf_dir) + (merge_lora.empty() ? "" : "." + merge_lora) + ".";
}

std::string lora_text(const ModelSource& s) {
  if (!s.merge_lora.empty()) return "; LoRA adapter '" + s.merge_lora + "' merged";
  const bool has_lora =
      s.config.raw.contains("vision_lora") || s.config.raw.contains("speech_lora");
  return has_lora ? "; LoRA adapters dropped (--merge_lora vision or speech merges one)" : "";
}

}  // namespace

ModelSource resolve_model(const std::string& name, const std::string& merge_lora_flag) {
  const std::string merge = merge_lora_flag == "none" ? std::string() : merge_lora_flag;
  check(merge.empty() || merge == "vision" || merge == "speech", "--merge_lora '", merge_lora_flag,
        "': expected none, vision or speech (Phi-4-multimodal's adapters)");
  ModelSource m;
  const fs::path d(name);
  if (ends_with(name, ".h5") || ends_with(name, ".hdf5")) {
    m.file = std::make_unique<ModelFileReader>(name);
    m.config = m.file->config();
    m.label = name + " (autotp model file)";
  } else if (fs::is_directory(d)) {
    const bool config = fs::exists(d / "config.json"), weights = has_weight_files(d);
    check(config || weights, name, ": no config.json and no model.safetensors in this folder; ",
          kFolderLayout);
    if (weights) {
      HfCheckpoint ck(name);  // checks config.json and every safetensors header
      m.config = ck.config();
      m.hf_dir = name;
      std::set<std::string> files;
      for (auto& t : ck.names()) files.insert(fs::path(ck.file_of(t)).filename().string());
      m.hf_weights =
          fs::exists(d / "model.safetensors")
              ? std::string("model.safetensors")
              : std::to_string(files.size()) + " shards listed by model.safetensors.index.json";
      m.merge_lora = merge;
      m.label = name + " (Hugging Face folder: config.json + " + m.hf_weights + ")";
    } else {
      m.config = ModelConfig::from_file((d / "config.json").string());
      m.label = (d / "config.json").string() + " (no weights in the folder)";
      m.random_from = (d / "config.json").string() + " (" + name +
                      " has no model.safetensors or model.safetensors.index.json)";
    }
  } else if (ends_with(name, ".json") || fs::exists(name)) {
    m.config = ModelConfig::from_file(name);
    m.label = name;
    m.random_from = name;
  } else {
    m.config = ModelConfig::preset(name);
    m.label = name + " (preset)";
    m.random_from = "the " + name + " preset";
  }
  check(merge.empty() || !m.hf_dir.empty(), "--merge_lora ", merge, ": ", name,
        " is not a Hugging Face folder with weights; the merge is made while converting one "
        "(for a model file, merge with autotp-convert --merge_lora)");
  return m;
}

void override_layers(ModelSource& src, int64_t layers, const std::string& name) {
  if (layers <= 0 || layers == src.config.num_hidden_layers) return;
  src.config.num_hidden_layers = layers;
  src.file.reset();
  src.hf_dir.clear();
  src.random_from = name + " with --layers " + std::to_string(layers);
}

std::string hf_conversion_path(const std::string& hf_dir, const std::string& merge_lora,
                               const std::string& cache_dir) {
  const fs::path d = fs::absolute(hf_dir).lexically_normal();
  uint64_t h = fnv1a("autotp-model " + std::to_string(kModelFileVersion) + "|" + merge_lora + "|" +
                     d.string());
  for (auto& f : source_files(d)) {
    const auto mtime = fs::last_write_time(f).time_since_epoch();
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(mtime).count();
    h = fnv1a("|" + f.filename().string() + "|" + std::to_string(fs::file_size(f)) + "|" +
                  std::to_string(ns),
              h);
  }
  return (fs::path(cache_dir) / (conversion_prefix(hf_dir, merge_lora) + hex16(h) + ".h5"))
      .string();
}

std::vector<std::string> ensure_hf_conversion(const std::string& hf_dir,
                                              const std::string& merge_lora,
                                              const std::string& cache_dir, bool& made) {
  const std::string path = hf_conversion_path(hf_dir, merge_lora, cache_dir);
  made = !fs::exists(path);
  if (!made) return {};
  fs::create_directories(cache_dir);
  ConvertOptions opt;
  opt.merge_lora = merge_lora;
  std::vector<std::string> notes = convert_hf_to_h5(hf_dir, path, opt);
  // Older conversions of this folder: the same prefix and 16 hex digits.
  const std::string prefix = conversion_prefix(hf_dir, merge_lora);
  for (auto& e : fs::directory_iterator(cache_dir)) {
    const std::string n = e.path().filename().string();
    if (e.path() != fs::path(path) && n.size() == prefix.size() + 16 + 3 &&
        n.compare(0, prefix.size(), prefix) == 0 && ends_with(n, ".h5") &&
        n.find_first_not_of("0123456789abcdef", prefix.size()) == prefix.size() + 16) {
      std::error_code ec;
      fs::remove(e.path(), ec);
      if (!ec) notes.push_back("removed the outdated conversion " + e.path().string());
    }
  }
  return notes;
}

void open_model_weights(ModelSource& src, const std::string& cache_dir, uint64_t seed,
                        MPI_Comm world) {
  if (src.hf_dir.empty()) {
    src.weights = src.file
                      ? src.file->path() + " (autotp model file)"
                      : "random init from " + src.random_from + ", seed " + std::to_string(seed);
    return;
  }
  bool made = false;
  const std::string path = on_rank0(world, [&] {
    src.notes = ensure_hf_conversion(src.hf_dir, src.merge_lora, cache_dir, made);
    return hf_conversion_path(src.hf_dir, src.merge_lora, cache_dir);
  });
  src.file = std::make_unique<ModelFileReader>(path);
  src.weights = src.hf_dir + " (" + src.hf_weights + lora_text(src) + "), " +
                (made ? "converted now to " : "read through its conversion ") + path;
}

}  // namespace autotp
