#pragma once
// safetensors: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end)}, "__metadata__": {...}}, then the data (offsets from byte 8 + N).
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace autotp {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
  // The file's own spelling ("BF16", "I64", ...). A checkpoint may hold tensors autotp never
  // reads (e.g. an int64 BatchNorm counter in an encoder that conversion skips), so a dtype
  // outside F32/F16/BF16 is size-checked and listed with supported = false; read() refuses it.
  std::string stored_dtype;
  bool supported = true;
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// Reads one .safetensors file. The constructor validates the whole header against the file
// size (offsets in range, contiguous, sizes = numel * dtype size) and throws Error naming the
// file and tensor on any lie. read() streams one tensor; nothing else is held in memory.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file order
  const TensorInfo* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  void read(const TensorInfo& t, void* dst) const;      // nbytes() bytes
  const TensorInfo& at(const std::string& name) const;  // Error names the missing tensor

 private:
  std::string path_;
  FILE* f_ = nullptr;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes one .safetensors file in a single pass: the header is laid out from the tensor list
// first (name, dtype, shape; offsets are assigned in list order), then tensors are written in
// that order. Metadata gets "format": "pt" unless given (transformers refuses a file without it).
// Writes to PATH.tmp, renamed by finish(); a write error (full disk) throws Error naming PATH.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, std::vector<TensorInfo> tensors,
                    const std::map<std::string, std::string>& metadata);
  ~SafetensorsWriter();  // removes the temporary file if finish() was not reached
  void write(const std::string& name, const void* data);  // must follow the given order
  void finish();

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
  std::vector<TensorInfo> tensors_;
  size_t next_ = 0;
};

}  // namespace autotp
