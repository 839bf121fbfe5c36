#pragma once
// Token files: a tokenized corpus, ready to be memory-mapped by every rank.
//
//   offset  size  field
//        0     8  magic "AUTOTPTK"
//        8     4  version (1)
//       12     4  bytes per token: 2 (uint16) when vocab_size <= 65536, else 4 (uint32)
//       16     8  vocab_size: every id is below it
//       24     8  num_tokens
//       32     8  num_documents (documents are joined by eos_id: num_documents - 1 of them)
//       40     8  eos_id
//       48     8  checksum: FNV-1a 64 of the token payload bytes
//       56     8  tokenizer fingerprint (Tokenizer::fingerprint)
//       64        num_tokens tokens
// Integers are little-endian (the byte order of every machine autotp runs on).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace autotp {

constexpr uint32_t kTokenFileVersion = 1;

struct TokenFileInfo {
  int64_t vocab_size = 0;
  int64_t num_documents = 0;
  uint32_t eos_id = 0;
  uint64_t tokenizer_hash = 0;
};

// Writes tokens to path (through a temporary name and a rename). Every id must be below
// info.vocab_size.
void write_token_file(const std::string& path, const std::vector<uint32_t>& tokens,
                      const TokenFileInfo& info);

class TokenFile {
 public:
  // Maps the file and checks magic, version, size and (when verify) the checksum; errors name
  // the file and say to re-run autotp-tokenize.
  explicit TokenFile(const std::string& path, bool verify = true);
  ~TokenFile();
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  const std::string& path() const { return path_; }
  int64_t num_tokens() const { return num_tokens_; }
  int64_t vocab_size() const { return info_.vocab_size; }
  const TokenFileInfo& info() const { return info_; }
  uint32_t operator[](int64_t i) const {
    return bytes_per_token_ == 2 ? reinterpret_cast<const uint16_t*>(payload_)[i]
                                 : reinterpret_cast<const uint32_t*>(payload_)[i];
  }
  // out[0..n) = tokens [begin, begin + n), as int32 (what embedding lookups take).
  void read(int64_t begin, int64_t n, int32_t* out) const;
  // The largest id in the file (a scan, done once).
  uint32_t max_id() const;
  // Error unless every id is below the model's vocab_size:
  // "token file X has id 5000 but the model's vocab_size is 2048: ...".
  void check_vocab(int64_t model_vocab_size) const;
  // Error unless the file was made with this tokenizer (fingerprints equal).
  void check_tokenizer(uint64_t fingerprint, const std::string& tokenizer_name) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const unsigned char* payload_ = nullptr;
  int64_t num_tokens_ = 0;
  uint32_t bytes_per_token_ = 0;
  TokenFileInfo info_;
  mutable int64_t max_id_ = -1;
};

}  // namespace autotp
