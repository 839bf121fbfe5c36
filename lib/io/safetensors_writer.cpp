#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/file_util.hpp"
#include "io/safetensors.hpp"

namespace autotp {

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<TensorInfo> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tmp_(tmp_path(path)), tensors_(std::move(tensors)) {
  // Header keys in the given order (ordered_json), __metadata__ first as the Python writer does.
  nlohmann::ordered_json header;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  if (!metadata.count("format")) meta["format"] = "pt";
  for (auto& [k, v] : metadata) meta[k] = v;
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (auto& t : tensors_) {
    check(t.name != "__metadata__" && !header.contains(t.name), path, ": tensor name '", t.name,
          "' appears twice (or is reserved)");
    uint64_t numel = 1;
    for (auto d : t.shape) {
      check(d >= 0, path, ": tensor '", t.name, "' has a negative dimension");
      numel *= uint64_t(d);
    }
    t.stored_dtype = dtype_name(t.dtype);
    t.supported = true;
    t.begin = offset;
    t.end = offset + numel * dtype_size(t.dtype);
    offset = t.end;
    header[t.name] = {
        {"dtype", t.stored_dtype}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned, as in Python

  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail(path_, ": cannot create ", tmp_, ": ", errno_text(errno));
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  if (std::fwrite(len, 1, 8, f_) != 8 ||
      std::fwrite(text.data(), 1, text.size(), f_) != text.size()) {
    int err = errno;
    std::fclose(f_);  // no destructor runs after a throwing constructor
    std::remove(tmp_.c_str());
    fail(path_, ": write failed: ", errno_text(err), " (is the disk full?)");
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void SafetensorsWriter::write(const std::string& name, const void* data) {
  check(f_ != nullptr, path_, ": write of '", name, "' after finish()");
  check(next_ < tensors_.size() && tensors_[next_].name == name, path_, ": tensor '", name,
        "' written out of order (expected '",
        next_ < tensors_.size() ? tensors_[next_].name : std::string("<none: all written>"), "')");
  const TensorInfo& t = tensors_[next_++];
  if (std::fwrite(data, 1, t.nbytes(), f_) != t.nbytes())
    fail(path_, ": write failed in tensor '", name, "': ", errno_text(errno),
         " (is the disk full?)");
}

void SafetensorsWriter::finish() {
  check(f_ != nullptr, path_, ": finish() called twice");
  check(next_ == tensors_.size(), path_, ": finish() after ", next_, " of ", tensors_.size(),
        " tensors (next missing: '", next_ < tensors_.size() ? tensors_[next_].name : "", "')");
  // Buffered data reaches the disk only at fflush/fsync/fclose: each can report a full disk.
  bool ok = std::fflush(f_) == 0;
  int err = errno;
  if (ok && ::fsync(fileno(f_)) != 0 && errno != EINVAL) ok = false, err = errno;
  if (std::fclose(f_) != 0 && ok) ok = false, err = errno;
  f_ = nullptr;
  if (!ok) {
    std::remove(tmp_.c_str());
    fail(path_, ": write failed: ", errno_text(err), " (is the disk full?)");
  }
  rename_into_place(tmp_, path_);
}

}  // namespace autotp
