#pragma once
// What a --model_name names: an autotp HDF5 model file (.h5/.hdf5), a config.json or the folder
// holding one, or a preset (tiny, phi-4, phi-4-mini, phi-4-multimodal). One resolution for
// autotp-train, autotp-bench and autotp-plan.
#include <memory>
#include <string>

#include "config/model_config.hpp"
#include "io/model_file.hpp"

namespace autotp {

struct ModelSource {
  ModelConfig config;
  std::unique_ptr<ModelFileReader> file;  // set for a model file (its weights can be loaded)
  std::string label;                      // e.g. "model.h5 (autotp model file)", "tiny (preset)"
};

ModelSource resolve_model(const std::string& name);

}  // namespace autotp
