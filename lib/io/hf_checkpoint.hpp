#pragma once
// A Hugging Face checkpoint directory: config.json plus model.safetensors, or sharded
// model-*.safetensors with model.safetensors.index.json. Conversion to and from the autotp
// model file streams tensor by tensor.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "io/safetensors.hpp"

namespace autotp {

struct ConvertOptions {
  std::string merge_lora;  // Phi-4-multimodal: "" = drop the adapters, or "vision" / "speech"
  std::string out_dtype;   // "" (or "keep") = keep each tensor's dtype, else F32 / BF16 / F16
  uint64_t max_shard_bytes = 5ull << 30;  // HDF5 -> safetensors: split above this size
};

// A Hugging Face checkpoint directory opened for reading. Every safetensors header is validated
// up front; tensors are then read one at a time (the model is never held in memory). As in
// transformers, model.safetensors is preferred over model.safetensors.index.json when both exist.
class HfCheckpoint {
 public:
  explicit HfCheckpoint(const std::string& dir);
  ~HfCheckpoint();
  const std::string& dir() const { return dir_; }
  const std::string& config_text() const { return config_text_; }  // config.json as read
  const ModelConfig& config() const { return config_; }
  const std::vector<std::string>& names() const { return names_; }  // files in order, then offsets
  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& at(const std::string& name) const;  // Error names the tensor and the dir
  const std::string& file_of(const std::string& name) const;
  void read(const std::string& name, void* dst) const;  // at(name).nbytes() bytes, stored dtype

 private:
  std::string dir_, config_text_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsReader>> files_;
  std::map<std::string, std::pair<size_t, const TensorInfo*>> where_;
  std::vector<std::string> names_;
};

// W[out, in] += (alpha / r) * B[out, r] @ A[r, in], all fp32, summing over r in order (the PEFT
// LoRA merge; the caller rounds W back to its dtype once, at the end).
void lora_merge(float* w, const float* a, const float* b, int64_t out, int64_t in, int64_t r,
                double alpha);

// "5GB" (10^9), "500MiB" (2^20), "123" (bytes): the spellings transformers' max_shard_size takes.
uint64_t parse_byte_size(const std::string& s);

// Returns a one-line summary per skipped/merged group of tensors (printed by the tool).
std::vector<std::string> convert_hf_to_h5(const std::string& hf_dir, const std::string& h5_path,
                                          const ConvertOptions& opt);
std::vector<std::string> convert_h5_to_hf(const std::string& h5_path, const std::string& hf_dir,
                                          const ConvertOptions& opt);

}  // namespace autotp
