// autotp model file -> Hugging Face checkpoint (config.json + model.safetensors, or shards with
// model.safetensors.index.json), one tensor at a time.
#include <filesystem>
#include <optional>
#include <set>

#include "core/error.hpp"
#include "io/convert_common.hpp"
#include "io/file_util.hpp"
#include "io/hf_checkpoint.hpp"
#include "io/model_file.hpp"

namespace autotp {

namespace fs = std::filesystem;

namespace {

// transformers' (huggingface_hub's) greedy split: a tensor that would push the current shard
// past the limit starts a new one; a tensor larger than the limit gets a shard of its own.
std::vector<std::vector<TensorInfo>> plan_shards(const std::vector<TensorInfo>& tensors,
                                                 uint64_t max_bytes) {
  std::vector<std::vector<TensorInfo>> shards(1);
  uint64_t size = 0;
  for (auto& t : tensors) {
    uint64_t n = t.nbytes();
    if (!shards.back().empty() && size + n > max_bytes) {
      shards.emplace_back();
      size = 0;
    }
    shards.back().push_back(t);
    size += n;
  }
  return shards;
}

std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

}  // namespace

std::vector<std::string> convert_h5_to_hf(const std::string& h5_path, const std::string& hf_dir,
                                          const ConvertOptions& opt) {
  check(opt.merge_lora.empty(), "--merge_lora applies to Hugging Face -> HDF5 conversion only");
  check(opt.max_shard_bytes > 0, "--max_shard_size must be positive");
  const std::optional<DType> out_dtype = parse_out_dtype(opt.out_dtype);
  ModelFileReader rd(h5_path);
  const ModelConfig& cfg = rd.config();
  std::vector<std::string> notes;

  // The file must hold exactly the model's parameters, in any order; written in HF order.
  const std::vector<ParamDesc> params = cfg.parameters();
  std::set<std::string> expected;
  std::vector<std::string> missing, extra;
  std::vector<TensorInfo> tensors;
  uint64_t offset = 0;
  for (auto& p : params) {
    expected.insert(p.name);
    const StoredTensor* t = rd.find(p.name);
    if (!t) {
      missing.push_back(p.name);
      continue;
    }
    check(t->shape == p.shape, h5_path, ": tensor '", p.name, "' has shape ",
          shape_string(t->shape), " but its config_json implies ", shape_string(p.shape),
          ": the file is corrupt; re-convert it");
    TensorInfo ti;
    ti.name = p.name;
    ti.dtype = out_dtype.value_or(t->dtype);
    ti.shape = p.shape;
    ti.begin = offset;
    ti.end = offset + uint64_t(p.numel()) * dtype_size(ti.dtype);
    offset = ti.end;
    tensors.push_back(ti);
  }
  check(missing.empty(), h5_path, ": missing tensor ", first_names(missing),
        ": the model file is incomplete; re-convert it");
  for (auto& t : rd.tensors())
    if (!expected.count(t.name)) extra.push_back(t.name);
  check(extra.empty(), h5_path, ": ", extra.size(),
        " tensor(s) are not parameters of the model its ",
        "config_json describes: ", first_names(extra));

  const auto shards = plan_shards(tensors, opt.max_shard_bytes);
  std::vector<std::string> files;
  for (size_t i = 0; i < shards.size(); ++i)
    files.push_back(shards.size() == 1 ? "model.safetensors" : shard_name(i, shards.size()));
  if (shards.size() > 1) files.push_back("model.safetensors.index.json");

  // A weight file we would not overwrite would be loaded instead of (or mixed with) ours.
  std::error_code ec;
  fs::create_directories(hf_dir, ec);
  check(fs::is_directory(hf_dir), hf_dir, ": cannot create the output directory (", ec.message(),
        ")");
  const std::set<std::string> ours(files.begin(), files.end());
  for (auto& e : fs::directory_iterator(hf_dir)) {
    std::string f = e.path().filename().string();
    bool weights = f.rfind("model", 0) == 0 &&
                   (f.size() > 12 && (f.compare(f.size() - 12, 12, ".safetensors") == 0 ||
                                      f == "model.safetensors.index.json"));
    check(!weights || ours.count(f), hf_dir, ": already holds ", f,
          ", which this conversion would not replace (it writes ", first_names(files, 2),
          "): remove it or choose an empty directory");
  }

  std::vector<char> buf;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    // Offsets restart in every file; the writer lays them out again from the list.
    SafetensorsWriter w((fs::path(hf_dir) / files[i]).string(), shards[i], {{"format", "pt"}});
    for (auto& t : shards[i]) {
      buf.resize(t.nbytes());
      rd.read(t.name, t.dtype, buf.data());
      w.write(t.name, buf.data());
      weight_map[t.name] = files[i];
    }
    w.finish();
  }
  if (shards.size() > 1) {
    // As transformers writes it: total_size = the bytes of all tensors, keys sorted, indent 2.
    nlohmann::json index = {{"metadata", {{"total_size", offset}}}, {"weight_map", weight_map}};
    write_text_file_atomic((fs::path(hf_dir) / files.back()).string(), index.dump(2) + "\n");
  }
  write_text_file_atomic((fs::path(hf_dir) / "config.json").string(),
                         retag_config_dtype(rd.config_text(), out_dtype, notes));
  notes.push_back("wrote " + std::to_string(tensors.size()) + " tensors (" + byte_string(offset) +
                  ") to " + hf_dir + " in " + std::to_string(shards.size()) + " file(s)");
  return notes;
}

}  // namespace autotp
