#include "data/token_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/fnv1a.hpp"

namespace autotp {

namespace {

constexpr char kMagic[8] = {'A', 'U', 'T', 'O', 'T', 'P', 'T', 'K'};

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t bytes_per_token;
  uint64_t vocab_size, num_tokens, num_documents, eos_id, checksum, tokenizer_hash;
};
static_assert(sizeof(Header) == 64, "the token file header is 64 bytes");

const char* const kRedo = ": re-run autotp-tokenize to make it again";

}  // namespace

void write_token_file(const std::string& path, const std::vector<uint32_t>& tokens,
                      const TokenFileInfo& info) {
  check(info.vocab_size > 0 && info.vocab_size <= (int64_t(1) << 32), "token file ", path,
        ": vocab_size ", info.vocab_size, " is not in 1..2^32");
  const uint32_t width = info.vocab_size <= 65536 ? 2 : 4;
  std::vector<unsigned char> payload(tokens.size() * width);
  for (size_t i = 0; i < tokens.size(); ++i) {
    check(tokens[i] < info.vocab_size, "token file ", path, ": token ", i, " is id ", tokens[i],
          ", not below vocab_size ", info.vocab_size);
    if (width == 2) {
      uint16_t v = uint16_t(tokens[i]);
      std::memcpy(&payload[i * 2], &v, 2);
    } else {
      std::memcpy(&payload[i * 4], &tokens[i], 4);
    }
  }
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.version = kTokenFileVersion;
  h.bytes_per_token = width;
  h.vocab_size = uint64_t(info.vocab_size);
  h.num_tokens = tokens.size();
  h.num_documents = uint64_t(info.num_documents);
  h.eos_id = info.eos_id;
  h.checksum = fnv1a(payload.data(), payload.size());
  h.tokenizer_hash = info.tokenizer_hash;

  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary);
    check(bool(f), "cannot write token file '", tmp, "'");
    f.write(reinterpret_cast<const char*>(&h), sizeof h);
    f.write(reinterpret_cast<const char*>(payload.data()), std::streamsize(payload.size()));
    check(bool(f.flush()), "writing token file '", tmp, "' failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  check(!ec, "cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

TokenFile::TokenFile(const std::string& path, bool verify) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  check(fd >= 0, "cannot open token file '", path, "': ", std::strerror(errno),
        " (make it with autotp-tokenize)");
  struct stat st {};
  ::fstat(fd, &st);
  map_size_ = size_t(st.st_size);
  if (map_size_ > 0) {
    map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_SHARED, fd, 0);
    if (map_ == MAP_FAILED) map_ = nullptr;
  }
  ::close(fd);
  check(map_size_ == 0 || map_, "cannot map token file '", path, "'");
  try {
    check(map_size_ >= sizeof(Header), "token file '", path, "' is ", map_size_,
          " bytes, shorter than its 64-byte header", kRedo);
    Header h;
    std::memcpy(&h, map_, sizeof h);
    check(std::memcmp(h.magic, kMagic, 8) == 0, "'", path,
          "' is not an autotp token file (no AUTOTPTK magic)", kRedo);
    check(h.version == kTokenFileVersion, "token file '", path, "' has format version ", h.version,
          "; this autotp reads version ", kTokenFileVersion, kRedo);
    check(h.bytes_per_token == 2 || h.bytes_per_token == 4, "token file '", path,
          "' has a corrupt header (", h.bytes_per_token, " bytes per token)", kRedo);
    bytes_per_token_ = h.bytes_per_token;
    num_tokens_ = int64_t(h.num_tokens);
    const uint64_t want = sizeof(Header) + h.num_tokens * h.bytes_per_token;
    check(map_size_ == want, "token file '", path, "' is ", map_size_,
          " bytes but its header says ", h.num_tokens, " tokens (", want, " bytes): it is ",
          map_size_ < want ? "truncated" : "longer than written", kRedo);
    info_ = {int64_t(h.vocab_size), int64_t(h.num_documents), uint32_t(h.eos_id), h.tokenizer_hash};
    payload_ = static_cast<const unsigned char*>(map_) + sizeof(Header);
    if (verify) {
      uint64_t sum = fnv1a(payload_, map_size_ - sizeof(Header));
      check(sum == h.checksum, "token file '", path, "' fails its checksum: the tokens are corrupt",
            kRedo);
    }
  } catch (...) {
    if (map_) ::munmap(map_, map_size_);
    throw;
  }
}

TokenFile::~TokenFile() {
  if (map_) ::munmap(map_, map_size_);
}

void TokenFile::read(int64_t begin, int64_t n, int32_t* out) const {
  check(begin >= 0 && n >= 0 && begin + n <= num_tokens_, "token file '", path_, "': tokens [",
        begin, ", ", begin + n, ") are outside its ", num_tokens_, " tokens");
  for (int64_t i = 0; i < n; ++i) out[i] = int32_t((*this)[begin + i]);
}

uint32_t TokenFile::max_id() const {
  if (max_id_ < 0) {
    uint32_t m = 0;
    for (int64_t i = 0; i < num_tokens_; ++i) m = std::max(m, (*this)[i]);
    max_id_ = m;
  }
  return uint32_t(max_id_);
}

void TokenFile::check_vocab(int64_t model_vocab_size) const {
  if (num_tokens_ == 0) return;
  uint32_t m = max_id();
  check(int64_t(m) < model_vocab_size, "token file ", path_, " has id ", m,
        " but the model's vocab_size is ", model_vocab_size,
        ": tokenizer and model do not match (tokenize with the model's tokenizer, or use a model "
        "whose vocab_size is at least ",
        int64_t(m) + 1, ")");
}

void TokenFile::check_tokenizer(uint64_t fingerprint, const std::string& tokenizer_name) const {
  check(info_.tokenizer_hash == fingerprint, "token file ", path_,
        " was made with another tokenizer than ", tokenizer_name,
        ": re-run autotp-tokenize with it");
}

}  // namespace autotp
