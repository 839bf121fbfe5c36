#pragma once
// The autotp model file (HDF5), format version 1:
//   /                  attributes: format = "autotp-model", format_version = 1,
//                      config_json = the Hugging Face config.json text
//   /tensors/<name>    one dataset per parameter under its Hugging Face name; F32 as IEEE
//                      float32, BF16 and F16 as 16-bit unsigned data with attribute
//                      dtype = "BF16" | "F16" (F32 datasets carry dtype = "F32" too)
// Datasets are contiguous so that a rank's shard is a few hyperslab reads.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "core/dtype.hpp"
#include "partition/plan.hpp"

namespace autotp {

constexpr int kModelFileVersion = 1;

struct StoredTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

// Writes PATH.tmp and renames it to PATH in finish(); a failure (full disk included) leaves any
// existing PATH untouched and throws Error naming the file. Destroyed before finish(), it
// removes PATH.tmp. write() takes the tensor in its own dtype (row-major, no strides).
class ModelFileWriter {
 public:
  ModelFileWriter(const std::string& path, const nlohmann::json& config_json);
  // config.json's text exactly as read, so that HF -> HDF5 -> HF gives back the same file.
  // It must parse as a model config (Error names PATH otherwise).
  ModelFileWriter(const std::string& path, const std::string& config_text);
  ~ModelFileWriter();
  void write(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
             const void* data);
  void finish();

 private:
  void init_root(const std::string& config_text);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ModelFileReader {
 public:
  explicit ModelFileReader(const std::string& path);  // checks format and version
  ~ModelFileReader();
  const std::string& path() const;
  const ModelConfig& config() const;
  const std::string& config_text() const;  // the stored config.json text, unchanged
  const std::vector<StoredTensor>& tensors() const;
  const StoredTensor* find(const std::string& name) const;
  const StoredTensor& at(const std::string& name) const;  // Error names the missing tensor

  // The whole tensor, converted to `out` dtype.
  void read(const std::string& name, DType out, void* dst) const;
  // Rank r's shard only, by hyperslab reads of each piece; converted to `out` dtype. Checks the
  // stored shape against the spec's global shape (Error names the tensor and both shapes).
  void read_shard(const ShardSpec& s, int64_t r, DType out, void* dst) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace autotp
