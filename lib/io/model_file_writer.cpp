#include <cstdio>
#include <set>

#include "core/error.hpp"
#include "io/file_util.hpp"
#include "io/hdf5_util.hpp"
#include "io/model_file.hpp"

namespace autotp {

struct ModelFileWriter::Impl {
  std::string path, tmp;
  h5::Id file, tensors;
  std::set<std::string> names;
  bool finished = false;

  [[noreturn]] void h5fail(const std::string& what) {
    fail(path, ": ", what, " failed (", h5::last_error(), "); is the disk full?");
  }
};

ModelFileWriter::ModelFileWriter(const std::string& path, const nlohmann::json& config_json)
    : ModelFileWriter(path, config_json.dump(2) + "\n") {}

ModelFileWriter::ModelFileWriter(const std::string& path, const std::string& config_text)
    : impl_(std::make_unique<Impl>()) {
  h5::quiet();
  Impl& m = *impl_;
  m.path = path;
  m.tmp = tmp_path(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(config_text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": the model config to store is not valid JSON (", e.what(), ")");
  }
  ModelConfig::from_json(j, path + " (config_json)");  // a file we write must load again

  // File format 1.8 (readable by HDF5 >= 1.8, h5py included) with dense attribute storage,
  // so a long config.json is not limited to the 64 KiB of a compact attribute.
  h5::Id fapl = h5::plist(h5::new_file_access());
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18);
  m.file = h5::file(H5Fcreate(m.tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
  if (!m.file.ok()) fail(path, ": cannot create ", m.tmp, " (", h5::last_error(), ")");
  try {
    init_root(config_text);
  } catch (...) {  // no destructor runs after a throwing constructor
    m.file.reset();
    std::remove(m.tmp.c_str());
    throw;
  }
}

void ModelFileWriter::init_root(const std::string& config_text) {
  Impl& m = *impl_;
  hid_t root = m.file.get();
  if (!h5::write_string_attr(root, "format", "autotp-model") ||
      !h5::write_int_attr(root, "format_version", kModelFileVersion) ||
      !h5::write_string_attr(root, "config_json", config_text))
    m.h5fail("writing the root attributes");
  // Track creation order so the reader lists tensors in the order they were written.
  h5::Id gcpl = h5::plist(H5Pcreate(H5P_GROUP_CREATE));
  H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  m.tensors = h5::group(H5Gcreate2(root, "tensors", H5P_DEFAULT, gcpl.get(), H5P_DEFAULT));
  if (!m.tensors.ok()) m.h5fail("creating /tensors");
}

ModelFileWriter::~ModelFileWriter() {
  if (!impl_ || impl_->finished) return;
  impl_->tensors.reset();
  impl_->file.reset();
  std::remove(impl_->tmp.c_str());
}

void ModelFileWriter::write(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            const void* data) {
  Impl& m = *impl_;
  check(!m.finished && m.file.ok(), m.path, ": write of '", name, "' after finish()");
  check(!name.empty() && name.find('/') == std::string::npos && name != "." && !m.names.count(name),
        m.path, ": tensor name '", name, "' is empty, holds '/', or was written twice");
  m.names.insert(name);
  std::vector<hsize_t> dims;
  for (auto d : shape) {
    check(d >= 0, m.path, ": tensor '", name, "' has a negative dimension");
    dims.push_back(hsize_t(d));
  }
  h5::Id space = h5::space(dims.empty() ? H5Screate(H5S_SCALAR)
                                        : H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  // Contiguous layout: a rank's shard is then a few hyperslab reads, no chunk decoding.
  h5::Id dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS);
  const bool f32 = dtype == DType::F32;
  hid_t file_type = f32 ? H5T_IEEE_F32LE : H5T_STD_U16LE;
  hid_t mem_type = f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT16;
  h5::Id ds = h5::dataset(H5Dcreate2(m.tensors.get(), name.c_str(), file_type, space.get(),
                                     H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  if (!ds.ok()) m.h5fail("creating dataset '" + name + "'");
  if (!h5::write_string_attr(ds.get(), "dtype", dtype_name(dtype)))
    m.h5fail("writing the dtype of '" + name + "'");
  if (H5Sget_simple_extent_npoints(space.get()) > 0 &&
      H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    m.h5fail("writing tensor '" + name + "'");
  if (ds.reset() < 0) m.h5fail("closing tensor '" + name + "'");
}

void ModelFileWriter::finish() {
  Impl& m = *impl_;
  check(!m.finished && m.file.ok(), m.path, ": finish() called twice");
  // HDF5 caches metadata and small raw data: a full disk may show only at flush or close.
  bool ok = m.tensors.reset() >= 0;
  ok = H5Fflush(m.file.get(), H5F_SCOPE_GLOBAL) >= 0 && ok;
  ok = m.file.reset() >= 0 && ok;
  if (!ok) {
    std::string err = h5::last_error();
    std::remove(m.tmp.c_str());
    fail(m.path, ": writing the model file failed (", err, "); is the disk full?");
  }
  try {
    fsync_file(m.tmp);
  } catch (const Error&) {
    std::remove(m.tmp.c_str());
    throw;
  }
  rename_into_place(m.tmp, m.path);
  m.finished = true;
}

}  // namespace autotp
