#include "checkpoint/shard_file.hpp"

#include <cstdio>

#include "core/error.hpp"
#include "io/file_util.hpp"
#include "io/hdf5_util.hpp"

namespace autotp {

namespace {

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// The file selection for elements [at, at + n): a hyperslab of a 1-D dataset, else everything.
h5::Id select(hid_t ds, const std::vector<int64_t>& shape, size_t at, size_t n,
              const std::string& what) {
  h5::Id fs = h5::space(H5Dget_space(ds));
  if (shape.size() == 1) {
    hsize_t start = at, count = n;
    H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr);
  } else {
    check(at == 0 && int64_t(n) == numel_of(shape), what, ": a ", shape.size(),
          "-D dataset is written and read whole");
  }
  return fs;
}

}  // namespace

struct ShardWriter::Impl {
  std::string path;
  h5::Id file;
  bool finished = false;
  [[noreturn]] void h5fail(const std::string& what) {
    fail(path, ": ", what, " failed (", h5::last_error(), "); is the disk full?");
  }
};

ShardWriter::ShardWriter(const std::string& path) : impl_(std::make_unique<Impl>()) {
  h5::quiet();
  impl_->path = path;
  h5::Id fapl = h5::plist(h5::new_file_access());
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18);
  // The file creation list is also the root group's: no timestamps, ordered links.
  h5::Id fcpl = h5::plist(H5Pcreate(H5P_FILE_CREATE));
  H5Pset_obj_track_times(fcpl.get(), false);
  H5Pset_link_creation_order(fcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  impl_->file = h5::file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()));
  if (!impl_->file.ok()) fail(path, ": cannot create (", h5::last_error(), ")");
}

ShardWriter::~ShardWriter() {
  if (impl_->finished) return;
  impl_->file.reset();
  std::remove(impl_->path.c_str());
}

void ShardWriter::attr(const std::string& name, int64_t value) {
  if (!h5::write_int_attr(impl_->file.get(), name.c_str(), value))
    impl_->h5fail("writing attribute " + name);
}

void ShardWriter::create(const std::string& name, const std::vector<int64_t>& shape) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  h5::Id sp = h5::space(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  h5::Id dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS);
  H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY);
  H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER);  // every element is written later
  H5Pset_obj_track_times(dcpl.get(), false);
  h5::Id ds = h5::dataset(H5Dcreate2(impl_->file.get(), name.c_str(), H5T_IEEE_F32LE, sp.get(),
                                     H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  if (!ds.ok()) impl_->h5fail("creating dataset '" + name + "'");
}

void ShardWriter::write(const std::string& name, size_t at, size_t n, const float* data) {
  if (n == 0) return;
  h5::Id ds = h5::dataset(H5Dopen2(impl_->file.get(), name.c_str(), H5P_DEFAULT));
  if (!ds.ok()) impl_->h5fail("opening dataset '" + name + "'");
  h5::Id sp = h5::space(H5Dget_space(ds.get()));
  std::vector<hsize_t> dims(size_t(H5Sget_simple_extent_ndims(sp.get())));
  H5Sget_simple_extent_dims(sp.get(), dims.data(), nullptr);
  h5::Id fs = select(ds.get(), std::vector<int64_t>(dims.begin(), dims.end()), at, n,
                     impl_->path + " '" + name + "'");
  hsize_t count = n;
  h5::Id ms = h5::space(H5Screate_simple(1, &count, nullptr));
  if (H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, ms.get(), fs.get(), H5P_DEFAULT, data) < 0)
    impl_->h5fail("writing dataset '" + name + "'");
}

void ShardWriter::finish() {
  Impl& m = *impl_;
  bool ok = H5Fflush(m.file.get(), H5F_SCOPE_GLOBAL) >= 0;
  ok = m.file.reset() >= 0 && ok;
  if (!ok) m.h5fail("closing the file");
  fsync_file(m.path);
  m.finished = true;
}

struct ShardReader::Impl {
  std::string path;
  h5::Id file;
  h5::Id open(const std::string& name) const {
    h5::Id ds = h5::dataset(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT));
    check(ds.ok(), path, ": has no dataset '", name,
          "': the file does not belong to this checkpoint's manifest; load another checkpoint");
    return ds;
  }
};

ShardReader::ShardReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  h5::quiet();
  impl_->path = path;
  h5::Id fapl = h5::plist(h5::new_file_access());
  impl_->file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!impl_->file.ok())
    fail(path, ": cannot open the checkpoint file (", h5::last_error(),
         "): it is missing or corrupt; load an earlier checkpoint");
}

ShardReader::~ShardReader() = default;

const std::string& ShardReader::path() const {
  return impl_->path;
}

int64_t ShardReader::int_attr(const std::string& name) const {
  auto v = h5::read_int_attr(impl_->file.get(), name.c_str());
  check(v.has_value(), impl_->path, ": no integer attribute '", name,
        "': not a file of an autotp checkpoint");
  return *v;
}

bool ShardReader::has(const std::string& dataset) const {
  return H5Lexists(impl_->file.get(), dataset.c_str(), H5P_DEFAULT) > 0;
}

std::vector<int64_t> ShardReader::shape(const std::string& name) const {
  h5::Id ds = impl_->open(name);
  h5::Id sp = h5::space(H5Dget_space(ds.get()));
  std::vector<hsize_t> dims(size_t(H5Sget_simple_extent_ndims(sp.get())));
  H5Sget_simple_extent_dims(sp.get(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

void ShardReader::read(const std::string& name, size_t at, size_t n, float* out) const {
  if (n == 0) return;
  h5::Id ds = impl_->open(name);
  h5::Id fs = select(ds.get(), shape(name), at, n, impl_->path + " '" + name + "'");
  hsize_t count = n;
  h5::Id ms = h5::space(H5Screate_simple(1, &count, nullptr));
  if (H5Dread(ds.get(), H5T_NATIVE_FLOAT, ms.get(), fs.get(), H5P_DEFAULT, out) < 0)
    fail(impl_->path, ": reading '", name, "' failed (", h5::last_error(),
         "): the file is truncated or corrupt; load an earlier checkpoint");
}

}  // namespace autotp
