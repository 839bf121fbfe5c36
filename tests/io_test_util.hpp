#pragma once
// Helpers for the io tests: scratch directories, fixture paths, whole-file bytes, and copies of
// a fixture checkpoint with one thing changed (a tensor dropped, renamed, reshaped, retyped).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "io/safetensors.hpp"

namespace iotest {

namespace fs = std::filesystem;

inline std::string fixture(const std::string& rel) {
  return std::string(AUTOTP_SOURCE_DIR) + "/tests/fixtures/io/" + rel;
}

// A fresh directory under /tmp, removed with everything in it at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/autotp_io_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& rel) const { return path + "/" + rel; }
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// A .safetensors file from raw parts, for headers no honest writer produces.
inline void write_raw_safetensors(const std::string& path, const std::string& header,
                                  const std::string& data) {
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[size_t(i)] = char(uint64_t(header.size()) >> (8 * i));
  write_bytes(path, len + header + data);
}

// One tensor of a checkpoint being rewritten; edit() may change any field or clear `keep`.
struct Tensor {
  autotp::TensorInfo info;
  std::string bytes;
  bool keep = true;
};

// Copies config.json and every tensor of the checkpoint in `src` into dst/model.safetensors,
// letting edit() change each tensor first. Tensors of dtypes autotp cannot write (the int64
// encoder counter of mm_tiny) are left out.
inline void copy_checkpoint(const std::string& src, const std::string& dst,
                            const std::function<void(Tensor&)>& edit) {
  fs::create_directories(dst);
  fs::copy_file(src + "/config.json", dst + "/config.json");
  std::vector<std::string> files;
  if (fs::exists(src + "/model.safetensors")) {
    files.push_back(src + "/model.safetensors");
  } else {
    for (auto& e : fs::directory_iterator(src))
      if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
  }
  std::vector<Tensor> all;
  for (auto& f : files) {
    autotp::SafetensorsReader r(f);
    for (auto& t : r.tensors()) {
      if (!t.supported) continue;
      Tensor x{t, std::string(t.nbytes(), '\0')};
      r.read(t, x.bytes.data());
      edit(x);
      if (x.keep) all.push_back(x);
    }
  }
  std::vector<autotp::TensorInfo> infos;
  for (auto& t : all) infos.push_back(t.info);
  autotp::SafetensorsWriter w(dst + "/model.safetensors", infos, {});
  for (auto& t : all) w.write(t.info.name, t.bytes.data());
  w.finish();
}

}  // namespace iotest
