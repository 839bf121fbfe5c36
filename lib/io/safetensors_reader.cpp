#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/file_util.hpp"
#include "io/safetensors.hpp"

namespace autotp {

using nlohmann::json;

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // the Python library's own limit

// Element sizes of every safetensors dtype, so that tensors autotp never reads are still
// checked against the file. 0 = unknown spelling.
uint64_t stored_dtype_size(const std::string& s) {
  static const std::pair<const char*, uint64_t> sizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  for (auto& [name, size] : sizes)
    if (s == name) return size;
  return 0;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

}  // namespace

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  const std::string corrupt = ": re-download the checkpoint or re-convert it";
  f_ = std::fopen(path.c_str(), "rb");
  if (!f_) fail(path, ": cannot open safetensors file: ", errno_text(errno));
  struct stat st;
  check(::fstat(fileno(f_), &st) == 0, path, ": cannot stat: ", errno_text(errno));
  const uint64_t file_size = uint64_t(st.st_size);
  check(file_size >= 8, path, ": file is truncated (", file_size,
        " bytes, less than the 8-byte header length)", corrupt);

  unsigned char len_bytes[8];
  check(std::fread(len_bytes, 1, 8, f_) == 8, path, ": cannot read the header length", corrupt);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | len_bytes[i];  // little-endian u64
  check(n <= kMaxHeader, path, ": header length ", n,
        " bytes is not plausible (limit 100 MB): not a safetensors file, or corrupt", corrupt);
  check(n <= file_size - 8, path, ": file is truncated: the header claims ", n,
        " bytes but the file holds ", file_size, " bytes in all", corrupt);
  std::string text(n, '\0');
  check(std::fread(text.data(), 1, n, f_) == n, path, ": short read of the header", corrupt);
  data_start_ = 8 + n;
  const uint64_t data_size = file_size - data_start_;

  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    fail(path, ": header is not valid JSON (", e.what(), ")", corrupt);
  }
  check(header.is_object(), path, ": header is not a JSON object", corrupt);

  for (auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      check(v.is_object(), path, ": __metadata__ is not a JSON object", corrupt);
      for (auto& [k, mv] : v.items())
        metadata_[k] = mv.is_string() ? mv.get<std::string>() : mv.dump();
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    check(v.is_object() && v.contains("dtype") && v["dtype"].is_string() && v.contains("shape") &&
              v["shape"].is_array() && v.contains("data_offsets") && v["data_offsets"].is_array() &&
              v["data_offsets"].size() == 2,
          where, ": header entry needs dtype, shape and data_offsets [begin, end)", corrupt);
    TensorInfo t;
    t.name = name;
    t.stored_dtype = v["dtype"].get<std::string>();
    const uint64_t esize = stored_dtype_size(t.stored_dtype);
    check(esize > 0, where, ": unknown dtype '", t.stored_dtype, "'", corrupt);
    t.supported = t.stored_dtype == "F32" || t.stored_dtype == "F16" || t.stored_dtype == "BF16";
    if (t.supported) t.dtype = dtype_from_name(t.stored_dtype);
    uint64_t numel = 1;
    for (auto& d : v["shape"]) {
      check(d.is_number_unsigned(), where, ": shape ", v["shape"].dump(),
            " must hold non-negative integers", corrupt);
      uint64_t dim = d.get<uint64_t>();
      check(!__builtin_mul_overflow(numel, dim, &numel) && numel < (1ull << 62), where, ": shape ",
            v["shape"].dump(), " is impossibly large", corrupt);
      t.shape.push_back(int64_t(dim));
    }
    auto& off = v["data_offsets"];
    check(off[0].is_number_unsigned() && off[1].is_number_unsigned(), where, ": data_offsets ",
          off.dump(), " must be non-negative integers", corrupt);
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    check(t.begin <= t.end, where, ": data_offsets ", off.dump(), " end before they begin",
          corrupt);
    check(t.end - t.begin == numel * esize, where, ": data_offsets ", off.dump(), " span ",
          t.end - t.begin, " bytes but ", t.stored_dtype, " ", shape_str(t.shape), " needs ",
          numel * esize, ": the header is corrupt", corrupt);
    tensors_.push_back(std::move(t));
  }

  // The tensors must tile the data section exactly: no overlap (a lie) and no gap.
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // The first tensor (in data order) that runs past the end is the one the cut went through.
  for (auto& t : tensors_)
    check(t.end <= data_size, path, ": file is truncated: tensor '", t.name, "' needs bytes [",
          t.begin, ", ", t.end, ") of the data section but only ", data_size,
          " bytes follow the header", corrupt);
  uint64_t pos = 0;
  for (auto& t : tensors_) {
    check(t.begin >= pos, path, ": tensor '", t.name, "' bytes [", t.begin, ", ", t.end,
          ") overlap the previous tensor (which ends at ", pos, "): the header is corrupt",
          corrupt);
    check(t.begin == pos, path, ": tensor '", t.name, "' starts at byte ", t.begin,
          " of the data section, leaving a gap after byte ", pos, ": the header is corrupt",
          corrupt);
    pos = t.end;
  }
  check(pos == data_size, path, ": ", data_size - pos,
        " bytes follow the last tensor: the file is corrupt", corrupt);
}

SafetensorsReader::~SafetensorsReader() {
  if (f_) std::fclose(f_);
}

const TensorInfo* SafetensorsReader::find(const std::string& name) const {
  for (auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorInfo& SafetensorsReader::at(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail(path_, ": no tensor named '", name, "'");
  return *t;
}

void SafetensorsReader::read(const TensorInfo& t, void* dst) const {
  check(t.supported, path_, ": tensor '", t.name, "' has dtype ", t.stored_dtype,
        "; autotp reads F32, F16 and BF16 tensors");
  const int fd = fileno(f_);
  char* out = static_cast<char*>(dst);
  uint64_t done = 0, n = t.nbytes();
  while (done < n) {
    ssize_t got = ::pread(fd, out + done, n - done, off_t(data_start_ + t.begin + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(path_, ": read error in tensor '", t.name, "': ", errno_text(errno));
    if (got == 0)
      fail(path_, ": file is truncated inside tensor '", t.name,
           "' (it changed after it was opened?): re-download the checkpoint or re-convert it");
    done += uint64_t(got);
  }
}

}  // namespace autotp
