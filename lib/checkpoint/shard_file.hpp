#pragma once
// The HDF5 files inside a checkpoint: float32 datasets at the root plus integer attributes.
// Written deterministically, so that the same contents give the same bytes however they were
// produced (the trainer writes each array whole, autotp-reshard writes it piece by piece):
// no object timestamps, creation order tracked, every dataset contiguous and allocated when it
// is created. A reshard A -> B -> A therefore gives back byte-identical files.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace autotp {

class ShardWriter {
 public:
  // Creates `path` (inside a checkpoint's temporary directory). Error names the file.
  explicit ShardWriter(const std::string& path);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;
  void attr(const std::string& name, int64_t value);
  // A float32 dataset of `shape`, its file space allocated now.
  void create(const std::string& name, const std::vector<int64_t>& shape);
  // Elements [at, at + n) of the dataset in row-major order: any range of a 1-D dataset, the
  // whole of any other.
  void write(const std::string& name, size_t at, size_t n, const float* data);
  // Flushes, closes and fsyncs; Error ("is the disk full?") on any failure.
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ShardReader {
 public:
  explicit ShardReader(const std::string& path);
  ~ShardReader();
  const std::string& path() const;
  int64_t int_attr(const std::string& name) const;  // Error names the file and attribute
  bool has(const std::string& dataset) const;
  std::vector<int64_t> shape(const std::string& dataset) const;
  // Elements [at, at + n), as in ShardWriter::write.
  void read(const std::string& name, size_t at, size_t n, float* out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace autotp
