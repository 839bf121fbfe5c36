#include "io/hdf5_util.hpp"

#include <vector>

namespace autotp::h5 {

void quiet() {
  thread_local bool done = false;
  if (!done) H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  done = true;
}

std::string last_error() {
  std::string msg;
  // H5E_WALK_UPWARD starts at the innermost (most specific) entry; keep the first one.
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
        if (n == 0 && e->desc) *static_cast<std::string*>(out) = e->desc;
        return 0;
      },
      &msg);
  // Low-level write errors embed the errno text: "..., error message = 'No space left ...', ..."
  const std::string key = "error message = '";
  size_t p = msg.find(key);
  if (p != std::string::npos) {
    size_t q = msg.find('\'', p + key.size());
    msg =
        msg.substr(p + key.size(), q == std::string::npos ? std::string::npos : q - p - key.size());
  }
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? std::string("unknown HDF5 error") : "HDF5: " + msg;
}

hid_t new_file_access() {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
  H5Pset_file_locking(fapl, true, true);
#endif
  return fapl;
}

Id& Id::operator=(Id&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
  }
  return *this;
}

herr_t Id::reset() {
  herr_t rc = 0;
  if (id_ >= 0 && close_) rc = close_(id_);
  id_ = -1;
  return rc;
}

hid_t Id::release() {
  hid_t id = id_;
  id_ = -1;
  return id;
}

bool write_string_attr(hid_t obj, const char* name, const std::string& value) {
  Id t = type(H5Tcopy(H5T_C_S1));
  if (!t.ok() || H5Tset_size(t.get(), value.size() + 1) < 0 ||
      H5Tset_strpad(t.get(), H5T_STR_NULLTERM) < 0 || H5Tset_cset(t.get(), H5T_CSET_UTF8) < 0)
    return false;
  Id s = space(H5Screate(H5S_SCALAR));
  Id a = attr(H5Acreate2(obj, name, t.get(), s.get(), H5P_DEFAULT, H5P_DEFAULT));
  return a.ok() && H5Awrite(a.get(), t.get(), value.c_str()) >= 0;
}

bool write_int_attr(hid_t obj, const char* name, int64_t value) {
  Id s = space(H5Screate(H5S_SCALAR));
  Id a = attr(H5Acreate2(obj, name, H5T_STD_I64LE, s.get(), H5P_DEFAULT, H5P_DEFAULT));
  return a.ok() && H5Awrite(a.get(), H5T_NATIVE_INT64, &value) >= 0;
}

std::optional<std::string> read_string_attr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return std::nullopt;
  Id a = attr(H5Aopen(obj, name, H5P_DEFAULT));
  Id ft = type(H5Aget_type(a.get()));
  if (!ft.ok() || H5Tget_class(ft.get()) != H5T_STRING) return std::nullopt;
  Id s = space(H5Aget_space(a.get()));
  if (H5Sget_simple_extent_npoints(s.get()) != 1) return std::nullopt;
  Id mt = type(H5Tcopy(H5T_C_S1));
  H5Tset_cset(mt.get(), H5Tget_cset(ft.get()));
  if (H5Tis_variable_str(ft.get()) > 0) {
    H5Tset_size(mt.get(), H5T_VARIABLE);
    char* p = nullptr;
    if (H5Aread(a.get(), mt.get(), &p) < 0) return std::nullopt;
    std::string v = p ? p : "";
    H5free_memory(p);
    return v;
  }
  size_t n = H5Tget_size(ft.get());
  H5Tset_size(mt.get(), n);
  H5Tset_strpad(mt.get(), H5Tget_strpad(ft.get()));
  std::vector<char> buf(n + 1, '\0');
  if (H5Aread(a.get(), mt.get(), buf.data()) < 0) return std::nullopt;
  return std::string(buf.data());  // stops at the first NUL (null-terminated or null-padded)
}

std::optional<int64_t> read_int_attr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return std::nullopt;
  Id a = attr(H5Aopen(obj, name, H5P_DEFAULT));
  Id ft = type(H5Aget_type(a.get()));
  if (!ft.ok() || H5Tget_class(ft.get()) != H5T_INTEGER) return std::nullopt;
  Id s = space(H5Aget_space(a.get()));
  if (H5Sget_simple_extent_npoints(s.get()) != 1) return std::nullopt;
  int64_t v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0) return std::nullopt;
  return v;
}

}  // namespace autotp::h5
