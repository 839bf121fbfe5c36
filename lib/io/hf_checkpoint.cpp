#include <algorithm>
#include <filesystem>
#include <set>

#include "core/error.hpp"
#include "io/file_util.hpp"
#include "io/hf_checkpoint.hpp"

namespace autotp {

namespace fs = std::filesystem;

HfCheckpoint::HfCheckpoint(const std::string& dir) : dir_(dir) {
  const std::string layout =
      ": a Hugging Face checkpoint directory holds config.json and model.safetensors (or "
      "model.safetensors.index.json with model-*.safetensors)";
  check(fs::is_directory(dir), dir, ": not a directory", layout);
  const fs::path d(dir);
  const std::string config_path = (d / "config.json").string();
  check(fs::exists(config_path), config_path, ": missing", layout);
  config_text_ = read_text_file(config_path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(config_text_);
  } catch (const nlohmann::json::exception& e) {
    fail(config_path, ": not valid JSON (", e.what(), ")");
  }
  config_ = ModelConfig::from_json(j, config_path);

  std::vector<std::string> files;
  std::map<std::string, std::string> weight_map;  // from the index, checked below
  const std::string index_path = (d / "model.safetensors.index.json").string();
  if (fs::exists(d / "model.safetensors")) {
    files.push_back((d / "model.safetensors").string());
  } else if (fs::exists(index_path)) {
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(read_text_file(index_path));
    } catch (const nlohmann::json::exception& e) {
      fail(index_path, ": not valid JSON (", e.what(), ")");
    }
    check(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
          index_path, ": no weight_map object; re-download the checkpoint");
    std::set<std::string> unique;
    for (auto& [name, file] : index["weight_map"].items()) {
      check(file.is_string(), index_path, ": weight_map['", name, "'] is not a file name");
      std::string f = file.get<std::string>();
      check(f.find('/') == std::string::npos, index_path, ": weight_map['", name, "'] = '", f,
            "' points outside the directory");
      weight_map[name] = f;
      unique.insert(f);
    }
    for (auto& f : unique) {
      check(fs::exists(d / f), index_path, " lists ", f, ", which is missing from ", dir,
            ": the download is incomplete; re-download the checkpoint");
      files.push_back((d / f).string());
    }
  } else {
    fail(dir, ": no model.safetensors or model.safetensors.index.json", layout,
         "; a pytorch_model.bin checkpoint must first be re-saved with "
         "save_pretrained(..., safe_serialization=True)");
  }

  for (auto& f : files) {
    files_.push_back(std::make_unique<SafetensorsReader>(f));
    for (auto& t : files_.back()->tensors()) {
      auto [it, fresh] = where_.emplace(t.name, std::make_pair(files_.size() - 1, &t));
      check(fresh, dir, ": tensor '", t.name, "' is in both ", files_[it->second.first]->path(),
            " and ", f, ": the checkpoint is corrupt; re-download it");
      names_.push_back(t.name);
    }
  }
  for (auto& [name, file] : weight_map) {
    auto it = where_.find(name);
    check(it != where_.end() && fs::path(files_[it->second.first]->path()).filename() == file,
          index_path, ": weight_map puts '", name, "' in ", file,
          ", but that file does not hold it: the download is incomplete or mixed; re-download");
  }
}

HfCheckpoint::~HfCheckpoint() = default;

const TensorInfo* HfCheckpoint::find(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : it->second.second;
}

const TensorInfo& HfCheckpoint::at(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail(dir_, ": the checkpoint has no tensor '", name, "'");
  return *t;
}

const std::string& HfCheckpoint::file_of(const std::string& name) const {
  at(name);
  return files_[where_.at(name).first]->path();
}

void HfCheckpoint::read(const std::string& name, void* dst) const {
  const TensorInfo& t = at(name);
  files_[where_.at(name).first]->read(t, dst);
}

}  // namespace autotp
