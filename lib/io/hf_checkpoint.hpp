#pragma once
// A Hugging Face checkpoint directory: config.json plus model.safetensors, or sharded
// model-*.safetensors with model.safetensors.index.json. Conversion to and from the autotp
// model file streams tensor by tensor.
#include <cstdint>
#include <string>
#include <vector>

namespace autotp {

struct ConvertOptions {
  std::string merge_lora;  // Phi-4-multimodal: "" = drop the adapters, or "vision" / "speech"
  std::string out_dtype;   // "" = keep each tensor's dtype, else F32 / BF16 / F16
  uint64_t max_shard_bytes = 5ull << 30;  // HDF5 -> safetensors: split above this size
};

// Returns a one-line summary per skipped/merged group of tensors (printed by the tool).
std::vector<std::string> convert_hf_to_h5(const std::string& hf_dir, const std::string& h5_path,
                                          const ConvertOptions& opt);
std::vector<std::string> convert_h5_to_hf(const std::string& h5_path, const std::string& hf_dir,
                                          const ConvertOptions& opt);

}  // namespace autotp
