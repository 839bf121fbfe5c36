#pragma once
// Thin RAII and error helpers over the HDF5 C API (internal to lib/io). HDF5's automatic error
// printing is switched off: a failed call becomes one autotp::Error naming our file, with the
// innermost HDF5 message (e.g. "No space left on device") appended.
#include <hdf5.h>

#include <optional>
#include <string>

namespace autotp::h5 {

void quiet();              // H5Eset_auto2(H5E_DEFAULT, NULL, NULL), once per thread
std::string last_error();  // the most specific message on the current HDF5 error stack

// An hid_t closed by the matching H5*close on scope exit.
class Id {
 public:
  using Closer = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, Closer c) : id_(id), close_(c) {}
  Id(Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Id& operator=(Id&& o) noexcept;
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() { reset(); }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  herr_t reset();   // closes now; returns the close status
  hid_t release();  // gives up ownership

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

// File access properties: file locks are taken where the filesystem supports them and skipped
// where it does not (HDF5 >= 1.10.7), so that every rank of a job can open the model file on
// cluster filesystems without flock, and HDF5_USE_FILE_LOCKING need not be set by hand.
hid_t new_file_access();

inline Id file(hid_t id) {
  return Id(id, H5Fclose);
}
inline Id group(hid_t id) {
  return Id(id, H5Gclose);
}
inline Id dataset(hid_t id) {
  return Id(id, H5Dclose);
}
inline Id space(hid_t id) {
  return Id(id, H5Sclose);
}
inline Id type(hid_t id) {
  return Id(id, H5Tclose);
}
inline Id attr(hid_t id) {
  return Id(id, H5Aclose);
}
inline Id plist(hid_t id) {
  return Id(id, H5Pclose);
}

// Scalar attributes. write_* return false on an HDF5 failure (the caller names the file).
bool write_string_attr(hid_t obj, const char* name, const std::string& value);
bool write_int_attr(hid_t obj, const char* name, int64_t value);
// nullopt when the attribute is absent or not of the kind asked for. Strings may be fixed or
// variable length (h5py writes the latter).
std::optional<std::string> read_string_attr(hid_t obj, const char* name);
std::optional<int64_t> read_int_attr(hid_t obj, const char* name);

}  // namespace autotp::h5
