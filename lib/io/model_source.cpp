#include "io/model_source.hpp"

#include <filesystem>

#include "core/strings.hpp"

namespace autotp {

ModelSource resolve_model(const std::string& name) {
  namespace fs = std::filesystem;
  ModelSource m;
  if (ends_with(name, ".h5") || ends_with(name, ".hdf5")) {
    m.file = std::make_unique<ModelFileReader>(name);
    m.config = m.file->config();
    m.label = name + " (autotp model file)";
  } else if (fs::is_directory(name)) {
    m.config = ModelConfig::from_file(name + "/config.json");
    m.label = name + "/config.json";
  } else if (ends_with(name, ".json") || fs::exists(name)) {
    m.config = ModelConfig::from_file(name);
    m.label = name;
  } else {
    m.config = ModelConfig::preset(name);
    m.label = name + " (preset)";
  }
  return m;
}

}  // namespace autotp
