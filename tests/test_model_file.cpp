// The HDF5 model file: layout on disk, round trips of every dtype, rank shards read by
// hyperslab against extract_shard of the full tensor, clear errors, and no partial files.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/mount.h>

#include <cstring>

#include "core/error.hpp"
#include "core/strings.hpp"
#include "io/hf_checkpoint.hpp"
#include "io/model_file.hpp"
#include "io_test_util.hpp"
#include "test_util.hpp"

using namespace autotp;
using iotest::fixture;
using iotest::read_bytes;
using iotest::TempDir;
using iotest::write_bytes;

namespace {

const std::string& phi4_config() {
  static const std::string text = read_bytes(fixture("phi4_tiny/config.json"));
  return text;
}

struct Sample {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

std::vector<Sample> samples() {
  std::vector<Sample> s;
  auto add = [&](std::string name, DType t, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    std::string b(size_t(n) * dtype_size(t), '\0');
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = 0.37f * float(i) - 1.5f;
    convert(v.data(), DType::F32, b.data(), t, size_t(n));
    s.push_back({name, t, shape, b});
  };
  add("w.f32", DType::F32, {2, 3});
  add("w.bf16", DType::BF16, {4, 5});
  add("w.f16", DType::F16, {3, 2, 2});
  add("scalar", DType::F32, {});
  add("empty", DType::BF16, {0, 3});
  return s;
}

void write_samples(const std::string& path) {
  ModelFileWriter w(path, phi4_config());
  for (auto& s : samples()) w.write(s.name, s.dtype, s.shape, s.bytes.data());
  w.finish();
}

}  // namespace

TEST(ModelFile, RoundTripsEveryDtypeAndTheConfigText) {
  TempDir tmp;
  write_samples(tmp / "m.h5");
  EXPECT_FALSE(iotest::fs::exists(tmp / "m.h5.tmp"));
  ModelFileReader r(tmp / "m.h5");
  EXPECT_EQ(r.config_text(), phi4_config());  // byte for byte
  EXPECT_EQ(r.config().hidden_size, 32);
  EXPECT_FALSE(r.config().tie_word_embeddings);
  auto want = samples();
  ASSERT_EQ(r.tensors().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const StoredTensor& t = r.tensors()[i];  // in the order written
    EXPECT_EQ(t.name, want[i].name);
    EXPECT_EQ(t.dtype, want[i].dtype) << t.name;
    EXPECT_EQ(t.shape, want[i].shape) << t.name;
    std::string got(want[i].bytes.size(), '\0');
    r.read(t.name, t.dtype, got.data());
    EXPECT_EQ(got, want[i].bytes) << t.name;
    // Read converted: equals core's convert() of the stored values.
    for (DType out : {DType::F32, DType::BF16, DType::F16}) {
      size_t n = size_t(t.numel());
      std::string conv(n * dtype_size(out), '\0'), expect(n * dtype_size(out), '\0');
      r.read(t.name, out, conv.data());
      convert(want[i].bytes.data(), t.dtype, expect.data(), out, n);
      EXPECT_EQ(conv, expect) << t.name << " as " << dtype_name(out);
    }
  }
}

// The layout model_file.hpp promises, checked with the HDF5 API directly.
TEST(ModelFile, LayoutOnDisk) {
  TempDir tmp;
  write_samples(tmp / "m.h5");
  hid_t f = H5Fopen((tmp / "m.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  int64_t version = 0;
  hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
  H5Aread(a, H5T_NATIVE_INT64, &version);
  H5Aclose(a);
  EXPECT_EQ(version, 1);
  a = H5Aopen(f, "format", H5P_DEFAULT);
  hid_t at = H5Aget_type(a);
  std::vector<char> fmt(H5Tget_size(at) + 1, '\0');
  H5Aread(a, at, fmt.data());
  EXPECT_STREQ(fmt.data(), "autotp-model");
  H5Tclose(at);
  H5Aclose(a);
  for (auto [name, file_type, dtype] :
       {std::tuple{"w.f32", H5T_IEEE_F32LE, "F32"}, std::tuple{"w.bf16", H5T_STD_U16LE, "BF16"},
        std::tuple{"w.f16", H5T_STD_U16LE, "F16"}}) {
    hid_t ds = H5Dopen2(f, (std::string("/tensors/") + name).c_str(), H5P_DEFAULT);
    ASSERT_GE(ds, 0) << name;
    hid_t t = H5Dget_type(ds);
    EXPECT_GT(H5Tequal(t, file_type), 0) << name;
    hid_t dcpl = H5Dget_create_plist(ds);
    EXPECT_EQ(H5Pget_layout(dcpl), H5D_CONTIGUOUS) << name;
    hid_t da = H5Aopen(ds, "dtype", H5P_DEFAULT);
    hid_t dat = H5Aget_type(da);
    std::vector<char> s(H5Tget_size(dat) + 1, '\0');
    H5Aread(da, dat, s.data());
    EXPECT_STREQ(s.data(), dtype) << name;
    H5Tclose(dat);
    H5Aclose(da);
    H5Pclose(dcpl);
    H5Tclose(t);
    H5Dclose(ds);
  }
  H5Fclose(f);
}

// --- rank shards -------------------------------------------------------------------------------

namespace {

// Hand-made specs (not build_plan): the fused column splits with unequal parts (GQA qkv), equal
// fused parts (gate_up), row splits (plain and fused), both embedding splits, a split 1-D
// tensor, and replication.
std::vector<ShardSpec> specs_for(const ParamDesc& p, const ModelConfig& c, int64_t tp) {
  auto mk = [&](int dim, std::vector<int64_t> parts, PartitionType type) {
    ShardSpec s;
    s.name = p.name;
    s.shape = p.shape;
    s.split_dim = dim;
    s.parts = parts;
    s.tp = tp;
    s.type = type;
    return s;
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  if (ends_with(p.name, "qkv_proj.weight"))
    return {mk(0, {c.q_rows(), c.kv_rows(), c.kv_rows()}, PartitionType::Column),
            mk(1, {H}, PartitionType::Row)};
  if (ends_with(p.name, "gate_up_proj.weight")) return {mk(0, {I, I}, PartitionType::Column)};
  if (ends_with(p.name, "o_proj.weight") || ends_with(p.name, "down_proj.weight"))
    return {mk(1, {p.shape[1]}, PartitionType::Row),
            mk(1, {p.shape[1] / 2, p.shape[1] / 2}, PartitionType::Row)};
  if (p.shape.size() == 2)  // embed_tokens, lm_head: by vocab and by hidden
    return {mk(0, {p.shape[0]}, PartitionType::Column), mk(1, {H}, PartitionType::Column)};
  return {mk(-1, {}, PartitionType::Skip), mk(0, {H}, PartitionType::Column)};
}

void check_every_shard(const std::string& h5) {
  ModelFileReader r(h5);
  const ModelConfig& c = r.config();
  int checked = 0;
  for (auto& p : c.parameters()) {
    const StoredTensor& t = r.at(p.name);
    const size_t es = dtype_size(t.dtype);
    std::string full(size_t(t.numel()) * es, '\0');
    r.read(p.name, t.dtype, full.data());
    for (int64_t tp : {1, 2, 4}) {
      for (const ShardSpec& s : specs_for(p, c, tp)) {
        const size_t n = size_t(s.local_numel());
        for (int64_t rank = 0; rank < tp; ++rank) {
          std::string want(n * es, '\0'), got(n * es, '\x55');
          extract_shard(s, rank, full.data(), want.data(), es);
          r.read_shard(s, rank, t.dtype, got.data());
          ASSERT_EQ(got, want) << p.name << " split_dim " << s.split_dim << " tp " << tp << " rank "
                               << rank;
          // Converted on the way: equals convert() of the same shard.
          const DType out = t.dtype == DType::F32 ? DType::BF16 : DType::F32;
          std::string conv(n * dtype_size(out), '\0'), conv_want(n * dtype_size(out), '\0');
          convert(want.data(), t.dtype, conv_want.data(), out, n);
          r.read_shard(s, rank, out, conv.data());
          ASSERT_EQ(conv, conv_want) << p.name << " as " << dtype_name(out) << " tp " << tp;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 100);
}

}  // namespace

TEST(ModelFileShards, EveryParameterTp124MatchesExtractShard) {
  TempDir tmp;
  for (auto model : {"phi4_tiny", "mini_tiny", "mm_tiny"}) {
    SCOPED_TRACE(model);
    const std::string h5 = tmp / (std::string(model) + ".h5");
    convert_hf_to_h5(fixture(model), h5, {});
    check_every_shard(h5);
  }
  // An F32 file (reads converted to BF16).
  ConvertOptions f32;
  f32.out_dtype = "F32";
  convert_hf_to_h5(fixture("phi4_tiny"), tmp / "f32.h5", f32);
  check_every_shard(tmp / "f32.h5");
}

TEST(ModelFileShards, ShapeMismatchNamesTensorAndBothShapes) {
  TempDir tmp;
  convert_hf_to_h5(fixture("phi4_tiny"), tmp / "m.h5", {});
  ModelFileReader r(tmp / "m.h5");
  ShardSpec s;
  s.name = "model.layers.0.self_attn.qkv_proj.weight";
  s.shape = {96, 32};  // as if the config had more heads
  s.split_dim = 0;
  s.parts = {32, 32, 32};
  s.tp = 2;
  std::vector<uint16_t> out(48 * 32);
  std::string msg = error_of([&] { r.read_shard(s, 0, DType::BF16, out.data()); });
  EXPECT_TRUE(has(msg, s.name) && has(msg, "[64, 32]") && has(msg, "[96, 32]")) << msg;
  s.name = "model.layers.9.self_attn.qkv_proj.weight";
  msg = error_of([&] { r.read_shard(s, 0, DType::BF16, out.data()); });
  EXPECT_TRUE(has(msg, "no tensor 'model.layers.9.self_attn.qkv_proj.weight'")) << msg;
  msg = error_of([&] { r.read("lm_head.weigth", DType::F32, out.data()); });
  EXPECT_TRUE(has(msg, "'lm_head.weigth'") && has(msg, tmp / "m.h5")) << msg;
}

// --- clear errors on bad files -------------------------------------------------------------------

TEST(ModelFileErrors, TruncatedNotHdf5NotAutotpWrongVersionBadDtype) {
  TempDir tmp;
  convert_hf_to_h5(fixture("phi4_tiny"), tmp / "m.h5", {});
  std::string bytes = read_bytes(tmp / "m.h5");

  write_bytes(tmp / "cut.h5", bytes.substr(0, bytes.size() / 2));
  std::string msg = error_of([&] { ModelFileReader r(tmp / "cut.h5"); });
  EXPECT_TRUE(has(msg, tmp / "cut.h5") && has(msg, "truncated")) << msg;

  msg = error_of([&] { ModelFileReader r(fixture("phi4_tiny/config.json")); });
  EXPECT_TRUE(has(msg, "not an HDF5 file") && has(msg, "autotp-convert")) << msg;
  msg = error_of([&] { ModelFileReader r(fixture("phi4_tiny")); });
  EXPECT_TRUE(has(msg, "is a directory")) << msg;
  msg = error_of([&] { ModelFileReader r(tmp / "absent.h5"); });
  EXPECT_TRUE(has(msg, "absent.h5") && has(msg, "no such model file")) << msg;

  // An HDF5 file that is not ours.
  hid_t f = H5Fcreate((tmp / "other.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  msg = error_of([&] { ModelFileReader r(tmp / "other.h5"); });
  EXPECT_TRUE(has(msg, "not an autotp model file") && has(msg, "autotp-convert HF_DIR OUT.h5"))
      << msg;

  // Our file with another format_version.
  iotest::fs::copy_file(tmp / "m.h5", tmp / "v2.h5");
  f = H5Fopen((tmp / "v2.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
  int64_t two = 2;
  H5Awrite(a, H5T_NATIVE_INT64, &two);
  H5Aclose(a);
  H5Fclose(f);
  msg = error_of([&] { ModelFileReader r(tmp / "v2.h5"); });
  EXPECT_TRUE(has(msg, "format_version 2") && has(msg, "reads version 1")) << msg;

  // A dataset of int32 among the tensors.
  iotest::fs::copy_file(tmp / "m.h5", tmp / "i32.h5");
  f = H5Fopen((tmp / "i32.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hsize_t dims[1] = {4};
  hid_t sp = H5Screate_simple(1, dims, nullptr);
  hid_t ds = H5Dcreate2(f, "/tensors/model.bogus", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                        H5P_DEFAULT);
  H5Dclose(ds);
  H5Sclose(sp);
  H5Fclose(f);
  msg = error_of([&] { ModelFileReader r(tmp / "i32.h5"); });
  EXPECT_TRUE(has(msg, "'model.bogus'") && has(msg, "integer data of 4 bytes")) << msg;
}

TEST(ModelFileWriter, RejectsAConfigThatIsNotAModelAndDuplicateNames) {
  TempDir tmp;
  std::string msg = error_of([&] { ModelFileWriter w(tmp / "m.h5", std::string("{\"x\": 1}")); });
  EXPECT_TRUE(has(msg, "hidden_size") || has(msg, "vocab_size")) << msg;
  EXPECT_FALSE(iotest::fs::exists(tmp / "m.h5.tmp"));
  ModelFileWriter w(tmp / "m.h5", phi4_config());
  float x = 1;
  w.write("a", DType::F32, {1}, &x);
  msg = error_of([&] { w.write("a", DType::F32, {1}, &x); });
  EXPECT_TRUE(has(msg, "'a'") && has(msg, "twice")) << msg;
}

// --- writers leave no partial file -------------------------------------------------------------

TEST(ModelFileWriter, UnfinishedWriterLeavesNoFileAndKeepsTheOldOne) {
  TempDir tmp;
  float x[4] = {1, 2, 3, 4};
  {
    ModelFileWriter w(tmp / "new.h5", phi4_config());
    w.write("a", DType::F32, {4}, x);
    EXPECT_TRUE(iotest::fs::exists(tmp / "new.h5.tmp"));
  }
  EXPECT_FALSE(iotest::fs::exists(tmp / "new.h5"));
  EXPECT_FALSE(iotest::fs::exists(tmp / "new.h5.tmp"));
  write_bytes(tmp / "old.h5", "previous contents");
  {
    ModelFileWriter w(tmp / "old.h5", phi4_config());
    w.write("a", DType::F32, {4}, x);
  }
  EXPECT_EQ(read_bytes(tmp / "old.h5"), "previous contents");
  EXPECT_FALSE(iotest::fs::exists(tmp / "old.h5.tmp"));
}

namespace {

std::string write_one_mib_h5(const std::string& path) {
  std::vector<float> x(256 * 1024, 0.5f);
  return error_of([&] {
    ModelFileWriter w(path, phi4_config());
    w.write("big", DType::F32, {256, 1024}, x.data());
    w.finish();
  });
}

}  // namespace

TEST(ModelFileWriter, FullDiskViaDevFullNamesTheFile) {
  if (!iotest::fs::exists("/dev/full")) GTEST_SKIP() << "/dev/full is not available";
  TempDir tmp;
  const std::string path = tmp / "m.h5";
  iotest::fs::create_symlink("/dev/full", path + ".tmp");
  std::string msg = write_one_mib_h5(path);
  EXPECT_TRUE(has(msg, path)) << msg;
  EXPECT_FALSE(iotest::fs::exists(path));
}

TEST(ModelFileWriter, FullDiskOnSmallTmpfsNamesTheFile) {
  TempDir tmp;
  if (::mount("tmpfs", tmp.path.c_str(), "tmpfs", 0, "size=64k") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                 << "); the /dev/full test covers the error path";
  const std::string path = tmp / "m.h5";
  write_bytes(path, "previous contents");
  std::string msg = write_one_mib_h5(path);
  EXPECT_TRUE(has(msg, path) && has(msg, "No space left on device")) << msg;
  EXPECT_EQ(read_bytes(path), "previous contents");
  EXPECT_FALSE(iotest::fs::exists(path + ".tmp"));
  ::umount(tmp.path.c_str());
}
