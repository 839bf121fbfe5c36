#pragma once
// What a --model_name names, resolved the same way by autotp-train, autotp-bench and autotp-plan:
//   NAME.h5 / NAME.hdf5  an autotp model file; each rank reads only its own shards
//   a folder             a Hugging Face checkpoint: config.json with model.safetensors, or with
//                        model.safetensors.index.json and its shards. Its weights are converted
//                        once into an autotp model file in a cache folder (the run's out_dir),
//                        re-made when the folder changes, and then read like a given .h5. A
//                        folder with config.json only starts from random weights, and says so
//   NAME.json            a config.json: random weights from the seed
//   a preset             tiny, phi-4, phi-4-mini, phi-4-multimodal: random weights from the seed
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "io/model_file.hpp"

namespace autotp {

struct ModelSource {
  ModelConfig config;
  std::string label;        // the model line, e.g. "phi4_tiny (Hugging Face folder, ...)"
  std::string hf_dir;       // a Hugging Face folder with weights (converted by open_model_weights)
  std::string hf_weights;   // with hf_dir: "model.safetensors" or "3 shards (model.safetensors...)"
  std::string merge_lora;   // with hf_dir: the LoRA adapter merged into the weights; "" = none
  std::string random_from;  // no weights: what the random initialisation follows
  std::unique_ptr<ModelFileReader> file;  // the weights every rank reads its shards from
  std::string weights;                    // where the weights came from (open_model_weights)
  std::vector<std::string> notes;         // the conversion's notes, when it ran just now

  bool has_weights() const { return file || !hf_dir.empty(); }
};

// Reads config.json (or the model file's config) only; nothing is converted. merge_lora: ""
// or "none" (a Phi-4-multimodal checkpoint's LoRA adapters are dropped), "vision" or "speech"
// (that adapter is merged into the base weights, as autotp-convert --merge_lora does); a merge
// needs a Hugging Face folder. Error names the file or folder that cannot serve.
ModelSource resolve_model(const std::string& name, const std::string& merge_lora = "");

// --layers N of autotp-bench and autotp-plan: the model with N layers, randomly initialised
// (stored weights of another depth do not fit), src.random_from naming `name`. N <= 0 or the
// model's own depth: unchanged.
void override_layers(ModelSource& src, int64_t layers, const std::string& name);

// Collective over world. A Hugging Face folder with weights: world rank 0 converts it into
// cache_dir unless the conversion of exactly these files is there (an Error, the file or
// tensor named, is raised on every rank), the others wait, then every rank opens the converted
// file. Sets src.file, src.weights (the start-up line's text: the file, or "random init from
// ..., seed S") and src.notes.
void open_model_weights(ModelSource& src, const std::string& cache_dir, uint64_t seed,
                        MPI_Comm world);

// The autotp model file that a Hugging Face folder converts to in cache_dir:
// <folder>[.<merge_lora>].<fingerprint>.h5. The fingerprint (FNV-1a) covers the folder's
// absolute path, the name, size and modification time of config.json, the index and every
// .safetensors file, merge_lora and the model file version, so any change gives a new name.
std::string hf_conversion_path(const std::string& hf_dir, const std::string& merge_lora,
                               const std::string& cache_dir);

// Converts hf_dir to hf_conversion_path() unless that file exists (written to a temp name and
// renamed, so an existing one is complete), and removes the folder's older conversions in
// cache_dir. Returns the converter's notes; none when the file was there already.
std::vector<std::string> ensure_hf_conversion(const std::string& hf_dir,
                                              const std::string& merge_lora,
                                              const std::string& cache_dir, bool& made);

}  // namespace autotp
