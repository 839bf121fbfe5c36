// safetensors reader and writer: agreement with the Python writer, validation of every header
// field against the file, clear errors, and no partial files.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "io_test_util.hpp"
#include "test_util.hpp"

using namespace autotp;
using iotest::fixture;
using iotest::read_bytes;
using iotest::TempDir;
using iotest::write_bytes;
using iotest::write_raw_safetensors;

namespace {

// Splits a safetensors file into its header JSON and data section.
void split_file(const std::string& bytes, nlohmann::ordered_json& header, std::string& data) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | uint8_t(bytes[size_t(i)]);
  header = nlohmann::ordered_json::parse(bytes.substr(8, n));
  data = bytes.substr(8 + n);
}

}  // namespace

TEST(Safetensors, ReadsTheTorchFixture) {
  SafetensorsReader r(fixture("phi4_tiny/model.safetensors"));
  ASSERT_EQ(r.tensors().size(), 15u);  // embed, 2 x 6 layer tensors, norm, lm_head
  EXPECT_EQ(r.metadata().at("format"), "pt");
  const TensorInfo& qkv = r.at("model.layers.1.self_attn.qkv_proj.weight");
  EXPECT_EQ(qkv.dtype, DType::BF16);
  EXPECT_EQ(qkv.shape, (std::vector<int64_t>{64, 32}));  // 4*8 + 2*2*8 rows
  EXPECT_EQ(qkv.nbytes(), 64u * 32 * 2);
  // Norm weights were drawn as 1 + 0.1 * N(0, 1): all near one, none exactly equal.
  const TensorInfo& norm = r.at("model.norm.weight");
  std::vector<uint16_t> v(32);
  r.read(norm, v.data());
  for (auto h : v) EXPECT_NEAR(bf16_to_f32(h), 1.0f, 0.5f);
  EXPECT_EQ(r.find("model.nonexistent.weight"), nullptr);
  std::string msg = error_of([&] { r.at("model.nonexistent.weight"); });
  EXPECT_NE(msg.find("model.nonexistent.weight"), std::string::npos) << msg;
}

// Given the tensors in the Python file's order, our writer produces the Python file exactly:
// same header JSON, same padding, same data.
TEST(Safetensors, WriterReproducesThePythonWriterByteForByte) {
  TempDir tmp;
  for (auto rel : {"phi4_tiny/model.safetensors", "mini_tiny/model-00002-of-00002.safetensors",
                   "mm_tiny_merged_vision.safetensors"}) {
    SafetensorsReader r(fixture(rel));
    SafetensorsWriter w(tmp / "out.safetensors", r.tensors(), r.metadata());
    for (auto& t : r.tensors()) {
      std::string buf(t.nbytes(), '\0');
      r.read(t, buf.data());
      w.write(t.name, buf.data());
    }
    w.finish();
    EXPECT_EQ(read_bytes(tmp / "out.safetensors"), read_bytes(fixture(rel))) << rel;
    EXPECT_FALSE(iotest::fs::exists(tmp / "out.safetensors.tmp"));
  }
}

TEST(Safetensors, WriterLaysOutHeaderInGivenOrder) {
  TempDir tmp;
  std::vector<TensorInfo> ts(3);
  ts[0].name = "z";
  ts[0].dtype = DType::F16;
  ts[0].shape = {3};
  ts[1].name = "a";
  ts[1].dtype = DType::F32;
  ts[1].shape = {2, 2};
  ts[2].name = "empty";
  ts[2].dtype = DType::BF16;
  ts[2].shape = {0, 5};
  SafetensorsWriter w(tmp / "x.safetensors", ts, {});
  uint16_t z[3] = {1, 2, 3};
  float a[4] = {1.5f, -2.0f, 3.25f, 0.0f};
  w.write("z", z);
  w.write("a", a);
  w.write("empty", nullptr);
  w.finish();
  std::string bytes = read_bytes(tmp / "x.safetensors");
  nlohmann::ordered_json h;
  std::string data;
  split_file(bytes, h, data);
  EXPECT_EQ((bytes.size() - data.size()) % 8, 0u);  // header padded to 8 bytes
  std::vector<std::string> keys;
  for (auto& [k, v] : h.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "z", "a", "empty"}));
  EXPECT_EQ(h["__metadata__"]["format"], "pt");
  using offsets = std::vector<uint64_t>;
  EXPECT_EQ(h["z"]["data_offsets"].get<offsets>(), (offsets{0, 6}));
  EXPECT_EQ(h["a"]["data_offsets"].get<offsets>(), (offsets{6, 22}));
  EXPECT_EQ(h["empty"]["data_offsets"].get<offsets>(), (offsets{22, 22}));
  ASSERT_EQ(data.size(), 22u);
  EXPECT_EQ(std::memcmp(data.data() + 6, a, 16), 0);

  SafetensorsReader r(tmp / "x.safetensors");
  ASSERT_EQ(r.tensors().size(), 3u);
  float back[4];
  r.read(r.at("a"), back);
  EXPECT_EQ(std::memcmp(back, a, 16), 0);
  EXPECT_EQ(r.at("empty").numel(), 0);
}

TEST(Safetensors, WriterRejectsOutOfOrderAndIncompleteWrites) {
  TempDir tmp;
  std::vector<TensorInfo> ts(2);
  ts[0].name = "first";
  ts[0].shape = {1};
  ts[1].name = "second";
  ts[1].shape = {1};
  float x = 1;
  SafetensorsWriter w(tmp / "x.safetensors", ts, {});
  std::string msg = error_of([&] { w.write("second", &x); });
  EXPECT_NE(msg.find("'second' written out of order (expected 'first')"), std::string::npos) << msg;
  w.write("first", &x);
  msg = error_of([&] { w.finish(); });
  EXPECT_NE(msg.find("next missing: 'second'"), std::string::npos) << msg;
}

// --- the header is checked against the file -------------------------------------------------

TEST(SafetensorsErrors, TruncatedFileNamesFileTensorAndWhatToDo) {
  TempDir tmp;
  std::string bytes = read_bytes(fixture("phi4_tiny/model.safetensors"));
  const std::string path = tmp / "cut.safetensors";
  write_bytes(path, bytes.substr(0, bytes.size() - 100));
  std::string msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("re-download"), std::string::npos) << msg;
  // Named: the first tensor, in data order, that the cut went through.
  SafetensorsReader whole(fixture("phi4_tiny/model.safetensors"));
  const uint64_t data_left = whole.tensors().back().end - 100;
  std::string cut_tensor;
  for (auto& t : whole.tensors())
    if (t.end > data_left && cut_tensor.empty()) cut_tensor = t.name;
  EXPECT_NE(msg.find("tensor '" + cut_tensor + "'"), std::string::npos) << msg;

  write_bytes(path, bytes.substr(0, 100));  // cut inside the header
  msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  write_bytes(path, bytes.substr(0, 5));  // not even the length
  msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(SafetensorsErrors, OffsetsThatLieAreCaught) {
  TempDir tmp;
  nlohmann::ordered_json h;
  std::string data;
  split_file(read_bytes(fixture("phi4_tiny/model.safetensors")), h, data);
  const std::string path = tmp / "lie.safetensors";
  const std::string victim = "model.layers.0.mlp.down_proj.weight";

  auto rewrite = [&](auto edit) {
    nlohmann::ordered_json h2 = h;
    edit(h2);
    write_raw_safetensors(path, h2.dump(), data);
    return error_of([&] { SafetensorsReader r(path); });
  };
  // Span not equal to numel * dtype size.
  std::string msg = rewrite([&](auto& j) {
    j[victim]["data_offsets"][1] = j[victim]["data_offsets"][1].template get<uint64_t>() + 2;
  });
  EXPECT_NE(msg.find(victim), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs 3072"), std::string::npos) << msg;  // 32 x 48 bf16
  // Moved back by 64 bytes: the right size, but over the end of the tensor before it.
  msg = rewrite([&](auto& j) {
    auto b = j[victim]["data_offsets"][0].template get<uint64_t>();
    j[victim]["data_offsets"] = {b - 64, b - 64 + 3072};
  });
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;
  // Beyond the end of the file.
  msg = rewrite([&](auto& j) { j[victim]["data_offsets"] = {data.size(), data.size() + 3072}; });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find(victim), std::string::npos) << msg;
  // A tensor removed from the header leaves a hole in the data.
  msg = rewrite([&](auto& j) { j.erase(victim); });
  EXPECT_NE(msg.find("gap"), std::string::npos) << msg;
  // Negative / malformed fields.
  msg = rewrite([&](auto& j) { j[victim]["shape"] = {-32, 48}; });
  EXPECT_NE(msg.find(victim), std::string::npos) << msg;
  msg = rewrite([&](auto& j) { j[victim].erase("data_offsets"); });
  EXPECT_NE(msg.find("data_offsets"), std::string::npos) << msg;
  msg = rewrite([&](auto& j) { j[victim]["dtype"] = "Q4_K"; });
  EXPECT_NE(msg.find("unknown dtype 'Q4_K'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(victim), std::string::npos) << msg;

  // Header length beyond the file or beyond reason, and header text that is not JSON.
  std::string bytes = read_bytes(fixture("phi4_tiny/model.safetensors"));
  std::string bad = bytes;
  bad[5] = char(0x7f);  // length ~ 2^47
  write_bytes(path, bad);
  msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find("not plausible"), std::string::npos) << msg;
  write_raw_safetensors(path, "{\"a\": [1, 2", "");
  msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  msg = error_of([&] { SafetensorsReader r(tmp / "absent.safetensors"); });
  EXPECT_NE(msg.find("absent.safetensors"), std::string::npos) << msg;
}

// Tensors of other dtypes are size-checked and listed, but cannot be read as weights.
TEST(SafetensorsErrors, OtherDtypesAreListedButNotRead) {
  TempDir tmp;
  const std::string path = tmp / "i64.safetensors";
  write_raw_safetensors(path,
                        R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                        R"("w":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})",
                        std::string(20, '\0'));
  SafetensorsReader r(path);
  const TensorInfo& ids = r.at("ids");
  EXPECT_FALSE(ids.supported);
  EXPECT_EQ(ids.stored_dtype, "I64");
  EXPECT_TRUE(r.at("w").supported);
  int64_t buf[2];
  std::string msg = error_of([&] { r.read(ids, buf); });
  EXPECT_NE(msg.find("'ids' has dtype I64"), std::string::npos) << msg;
  // Eight bytes per I64 element are enforced like any other size.
  write_raw_safetensors(path, R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}})",
                        std::string(8, '\0'));
  msg = error_of([&] { SafetensorsReader r2(path); });
  EXPECT_NE(msg.find("needs 16"), std::string::npos) << msg;
}

// --- writers leave no partial file -----------------------------------------------------------

TEST(SafetensorsWriter, UnfinishedWriterLeavesNoFileAndKeepsTheOldOne) {
  TempDir tmp;
  std::vector<TensorInfo> ts(2);
  ts[0].name = "a";
  ts[0].shape = {4};
  ts[1].name = "b";
  ts[1].shape = {4};
  float x[4] = {1, 2, 3, 4};
  {
    SafetensorsWriter w(tmp / "new.safetensors", ts, {});
    w.write("a", x);
    EXPECT_TRUE(iotest::fs::exists(tmp / "new.safetensors.tmp"));
  }
  EXPECT_FALSE(iotest::fs::exists(tmp / "new.safetensors"));
  EXPECT_FALSE(iotest::fs::exists(tmp / "new.safetensors.tmp"));

  write_bytes(tmp / "old.safetensors", "previous contents");
  {
    SafetensorsWriter w(tmp / "old.safetensors", ts, {});
    w.write("a", x);
    w.write("b", x);  // everything written, but finish() never reached
  }
  EXPECT_EQ(read_bytes(tmp / "old.safetensors"), "previous contents");
  EXPECT_FALSE(iotest::fs::exists(tmp / "old.safetensors.tmp"));
}

namespace {

// Writes 1 MiB through the writer into `path`; returns the error message.
std::string write_one_mib(const std::string& path) {
  std::vector<TensorInfo> ts(1);
  ts[0].name = "big";
  ts[0].shape = {256, 1024};
  std::vector<float> x(256 * 1024, 0.5f);
  return error_of([&] {
    SafetensorsWriter w(path, ts, {});
    w.write("big", x.data());
    w.finish();
  });
}

}  // namespace

// /dev/full fails every write with ENOSPC: reached through the temporary file's name, it shows
// a full disk surfacing as one Error that names the file, and no file left behind.
TEST(SafetensorsWriter, FullDiskViaDevFullNamesTheFile) {
  if (!iotest::fs::exists("/dev/full")) GTEST_SKIP() << "/dev/full is not available";
  TempDir tmp;
  const std::string path = tmp / "model.safetensors";
  iotest::fs::create_symlink("/dev/full", path + ".tmp");
  std::string msg = write_one_mib(path);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
  EXPECT_FALSE(iotest::fs::exists(path));
  EXPECT_FALSE(iotest::fs::is_symlink(path + ".tmp"));
}

// A real small filesystem, when this process may mount one (root with CAP_SYS_ADMIN).
TEST(SafetensorsWriter, FullDiskOnSmallTmpfsNamesTheFile) {
  TempDir tmp;
  if (::mount("tmpfs", tmp.path.c_str(), "tmpfs", 0, "size=64k") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                 << "); the /dev/full test covers the error path";
  const std::string path = tmp / "model.safetensors";
  iotest::write_bytes(tmp / "keep.txt", "untouched");
  std::string msg = write_one_mib(path);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
  EXPECT_FALSE(iotest::fs::exists(path));
  EXPECT_FALSE(iotest::fs::exists(path + ".tmp"));
  EXPECT_EQ(read_bytes(tmp / "keep.txt"), "untouched");
  ::umount(tmp.path.c_str());
}
