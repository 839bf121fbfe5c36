#include <sys/stat.h>

#include <map>

#include "core/error.hpp"
#include "io/hdf5_util.hpp"
#include "io/model_file.hpp"

namespace autotp {

int64_t StoredTensor::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

hid_t mem_type(DType t) {
  return t == DType::F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT16;
}

}  // namespace

struct ModelFileReader::Impl {
  std::string path, config_text;
  ModelConfig config;
  h5::Id file;
  std::vector<StoredTensor> tensors;
  std::map<std::string, size_t> index;

  h5::Id open_dataset(const std::string& name) const {
    h5::Id ds = h5::dataset(H5Dopen2(file.get(), ("/tensors/" + name).c_str(), H5P_DEFAULT));
    if (!ds.ok()) fail(path, ": cannot open tensor '", name, "' (", h5::last_error(), ")");
    return ds;
  }
  [[noreturn]] void read_fail(const std::string& name) const {
    fail(path, ": reading tensor '", name, "' failed (", h5::last_error(),
         "): the file is truncated or corrupt; re-convert it with autotp-convert");
  }
  StoredTensor describe(const std::string& name) const;
};

// One dataset's dtype and shape. The dtype attribute decides; without one (a file written by
// hand with h5py) a 32-bit float dataset is F32. Anything else is refused here, at open.
StoredTensor ModelFileReader::Impl::describe(const std::string& name) const {
  const std::string what = path + ": tensor '" + name + "'";
  StoredTensor t;
  t.name = name;
  h5::Id ds = open_dataset(name);
  h5::Id ft = h5::type(H5Dget_type(ds.get()));
  H5T_class_t cls = H5Tget_class(ft.get());
  size_t size = H5Tget_size(ft.get());
  std::string attr = h5::read_string_attr(ds.get(), "dtype").value_or("");
  bool is_f32 = cls == H5T_FLOAT && size == 4, is_u16 = cls == H5T_INTEGER && size == 2;
  if (attr.empty() && is_f32) attr = "F32";
  if (attr == "F32" && is_f32) {
    t.dtype = DType::F32;
  } else if ((attr == "BF16" || attr == "F16") && is_u16) {
    t.dtype = attr == "BF16" ? DType::BF16 : DType::F16;
  } else {
    fail(what, " is stored as ",
         cls == H5T_FLOAT     ? "float"
         : cls == H5T_INTEGER ? "integer"
                              : "non-numeric",
         " data of ", size, " bytes with dtype attribute '", attr,
         "'; an autotp model file holds F32 (float32) or BF16/F16 (uint16 + dtype attribute): "
         "re-convert it with autotp-convert");
  }
  h5::Id sp = h5::space(H5Dget_space(ds.get()));
  int nd = H5Sget_simple_extent_ndims(sp.get());
  check(nd >= 0, what, ": unreadable dataspace (", h5::last_error(), ")");
  std::vector<hsize_t> dims(size_t(nd) + 1);
  H5Sget_simple_extent_dims(sp.get(), dims.data(), nullptr);
  for (int i = 0; i < nd; ++i) t.shape.push_back(int64_t(dims[size_t(i)]));
  return t;
}

ModelFileReader::ModelFileReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  h5::quiet();
  Impl& m = *impl_;
  m.path = path;
  const std::string howto =
      ": convert a Hugging Face checkpoint with `autotp-convert HF_DIR OUT.h5`";
  struct stat st;
  check(::stat(path.c_str(), &st) == 0, path, ": no such model file", howto);
  check(!S_ISDIR(st.st_mode), path,
        " is a directory, not an autotp model file (a Hugging Face checkpoint?)", howto);
  htri_t is_h5 = H5Fis_hdf5(path.c_str());
  H5Eclear2(H5E_DEFAULT);
  check(is_h5 > 0, path, ": not an HDF5 file (truncated, or another format)", howto);
  h5::Id fapl = h5::plist(h5::new_file_access());
  m.file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!m.file.ok())
    fail(path, ": cannot open the HDF5 file (", h5::last_error(),
         "): it is truncated or corrupt; re-convert it with autotp-convert");
  hid_t root = m.file.get();

  auto format = h5::read_string_attr(root, "format");
  check(format && *format == "autotp-model", path,
        ": not an autotp model file (no root attribute format = \"autotp-model\")", howto);
  auto version = h5::read_int_attr(root, "format_version");
  check(version.has_value(), path, ": autotp model file without a format_version attribute", howto);
  check(*version == kModelFileVersion, path, ": autotp model file format_version ", *version,
        ", but this autotp reads version ", kModelFileVersion,
        ": re-convert the checkpoint with this autotp's autotp-convert");
  auto text = h5::read_string_attr(root, "config_json");
  check(text.has_value(), path, ": autotp model file without the config_json attribute", howto);
  m.config_text = *text;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(m.config_text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": config_json is not valid JSON (", e.what(), ")");
  }
  m.config = ModelConfig::from_json(j, path + " (config_json)");

  h5::Id g = h5::group(H5Gopen2(root, "tensors", H5P_DEFAULT));
  check(g.ok(), path, ": autotp model file without a /tensors group: the file is corrupt", howto);
  // Creation order when the writer tracked it (ours does), else name order.
  h5::Id gcpl = h5::plist(H5Gget_create_plist(g.get()));
  unsigned order_flags = 0;
  H5Pget_link_creation_order(gcpl.get(), &order_flags);
  H5_index_t idx = (order_flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
  std::vector<std::string> names;
  herr_t rc = H5Literate(
      g.get(), idx, H5_ITER_INC, nullptr,
      [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
        static_cast<std::vector<std::string>*>(out)->push_back(name);
        return 0;
      },
      &names);
  if (rc < 0) fail(path, ": cannot list /tensors (", h5::last_error(), "): the file is corrupt");
  for (auto& name : names) {
    m.index[name] = m.tensors.size();
    m.tensors.push_back(m.describe(name));
  }
}

ModelFileReader::~ModelFileReader() = default;

const std::string& ModelFileReader::path() const {
  return impl_->path;
}
const ModelConfig& ModelFileReader::config() const {
  return impl_->config;
}
const std::string& ModelFileReader::config_text() const {
  return impl_->config_text;
}
const std::vector<StoredTensor>& ModelFileReader::tensors() const {
  return impl_->tensors;
}

const StoredTensor* ModelFileReader::find(const std::string& name) const {
  auto it = impl_->index.find(name);
  return it == impl_->index.end() ? nullptr : &impl_->tensors[it->second];
}

const StoredTensor& ModelFileReader::at(const std::string& name) const {
  const StoredTensor* t = find(name);
  if (!t)
    fail(impl_->path, ": the model file has no tensor '", name,
         "': it was converted from another model, or is incomplete; re-convert it");
  return *t;
}

void ModelFileReader::read(const std::string& name, DType out, void* dst) const {
  const StoredTensor& t = at(name);
  h5::Id ds = impl_->open_dataset(name);
  if (t.numel() == 0) return;
  std::vector<char> tmp(out == t.dtype ? 0 : size_t(t.numel()) * dtype_size(t.dtype));
  void* buf = out == t.dtype ? dst : tmp.data();
  if (H5Dread(ds.get(), mem_type(t.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    impl_->read_fail(name);
  if (buf != dst) convert(buf, t.dtype, dst, out, size_t(t.numel()));
}

// Rank r holds piece r of every part along split_dim, concatenated in part order. Each piece is
// one hyperslab of the file (all of every other dim, [b, e) along split_dim) read into the
// matching hyperslab of the local tensor, so only rank r's bytes leave the disk.
void ModelFileReader::read_shard(const ShardSpec& s, int64_t r, DType out, void* dst) const {
  const StoredTensor& t = at(s.name);
  check(t.shape == s.shape, impl_->path, ": tensor '", s.name, "' has shape ", shape_str(t.shape),
        " in the model file but the partition plan expects ", shape_str(s.shape),
        ": the file holds a different model than the config describes");
  if (s.replicated()) return read(s.name, out, dst);
  const int nd = int(t.shape.size()), d = s.split_dim;
  check(d < nd, impl_->path, ": tensor '", s.name, "' has ", nd,
        " dims; cannot split it along dim ", d);
  check(r >= 0 && r < s.tp, "read_shard of '", s.name, "': rank ", r, " outside tp ", s.tp);
  const std::vector<int64_t> local = s.local_shape();
  int64_t local_numel = 1;
  for (auto v : local) local_numel *= v;
  if (local_numel == 0) return;

  h5::Id ds = impl_->open_dataset(s.name);
  h5::Id fspace = h5::space(H5Dget_space(ds.get()));
  std::vector<hsize_t> mdims(local.begin(), local.end());
  h5::Id mspace = h5::space(H5Screate_simple(nd, mdims.data(), nullptr));
  std::vector<char> tmp(out == t.dtype ? 0 : size_t(local_numel) * dtype_size(t.dtype));
  void* buf = out == t.dtype ? dst : tmp.data();

  std::vector<hsize_t> fstart(size_t(nd), 0), mstart(size_t(nd), 0), count(mdims);
  for (int i = 0; i < nd; ++i)
    if (i != d) count[size_t(i)] = hsize_t(t.shape[size_t(i)]);
  hsize_t at_local = 0;  // where this piece starts along split_dim in the local tensor
  for (auto [b, e] : s.ranges(r)) {
    if (e == b) continue;
    fstart[size_t(d)] = hsize_t(b);
    mstart[size_t(d)] = at_local;
    count[size_t(d)] = hsize_t(e - b);
    if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, fstart.data(), nullptr, count.data(),
                            nullptr) < 0 ||
        H5Sselect_hyperslab(mspace.get(), H5S_SELECT_SET, mstart.data(), nullptr, count.data(),
                            nullptr) < 0 ||
        H5Dread(ds.get(), mem_type(t.dtype), mspace.get(), fspace.get(), H5P_DEFAULT, buf) < 0)
      impl_->read_fail(s.name);
    at_local += hsize_t(e - b);
  }
  check(at_local == mdims[size_t(d)], "read_shard of '", s.name, "': the ranges of rank ", r,
        " cover ", at_local, " of the ", mdims[size_t(d)], " local entries along dim ", d);
  if (buf != dst) convert(buf, t.dtype, dst, out, size_t(local_numel));
}

}  // namespace autotp
