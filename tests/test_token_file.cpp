// Token files: round trips in both widths, and one clear error for each way a file goes bad.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.hpp"
#include "data/corpus.hpp"
#include "data/token_file.hpp"
#include "test_util.hpp"

using namespace autotp;

namespace {

std::string temp_path(const std::string& name) {
  return std::string(AUTOTP_BINARY_DIR) + "/test_token_file_" + name;
}

void expect_has(const std::string& msg, const std::string& part) {
  EXPECT_NE(msg.find(part), std::string::npos) << "message: " << msg << "\nwanted: " << part;
}

std::vector<uint32_t> ramp(size_t n, uint32_t mod) {
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint32_t((i * 2654435761u) % mod);
  return v;
}

void poke(const std::string& path, long offset, char byte) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(offset);
  f.put(byte);
}

}  // namespace

TEST(TokenFile, RoundTripsUint16AndUint32) {
  for (int64_t vocab : {int64_t(2048), int64_t(65536), int64_t(100352)}) {
    std::string path = temp_path("rt" + std::to_string(vocab) + ".tok");
    std::vector<uint32_t> tokens = ramp(10007, uint32_t(vocab));
    write_token_file(path, tokens, {vocab, 3, 0, 0xABCDEF0123456789ull});
    EXPECT_EQ(std::filesystem::file_size(path), 64 + tokens.size() * (vocab <= 65536 ? 2 : 4));
    TokenFile f(path);
    ASSERT_EQ(f.num_tokens(), int64_t(tokens.size()));
    EXPECT_EQ(f.vocab_size(), vocab);
    EXPECT_EQ(f.info().num_documents, 3);
    EXPECT_EQ(f.info().tokenizer_hash, 0xABCDEF0123456789ull);
    for (size_t i = 0; i < tokens.size(); ++i) ASSERT_EQ(f[int64_t(i)], tokens[i]) << i;
    std::vector<int32_t> window(17);
    f.read(100, 17, window.data());
    for (int i = 0; i < 17; ++i) EXPECT_EQ(window[i], int32_t(tokens[100 + i]));
    EXPECT_EQ(f.max_id(), *std::max_element(tokens.begin(), tokens.end()));
    f.check_vocab(vocab);
  }
}

TEST(TokenFile, EachCorruptionIsOneClearErrorNamingTheFile) {
  std::string path = temp_path("bad.tok");
  auto fresh = [&] { write_token_file(path, ramp(1000, 2048), {2048, 1, 0, 0}); };

  fresh();
  std::filesystem::resize_file(path, 64 + 2 * 1000 - 2);
  std::string m = error_of([&] { TokenFile f(path); });
  expect_has(m, "token file '" + path + "' is 2062 bytes but its header says 1000 tokens");
  expect_has(m, "truncated: re-run autotp-tokenize");

  fresh();
  poke(path, 0, 'X');
  m = error_of([&] { TokenFile f(path); });
  expect_has(m, "'" + path + "' is not an autotp token file (no AUTOTPTK magic)");

  fresh();
  poke(path, 64 + 501, 0x7F);  // one payload byte
  m = error_of([&] { TokenFile f(path); });
  expect_has(m, "token file '" + path + "' fails its checksum");
  expect_has(m, "re-run autotp-tokenize");
  TokenFile unchecked(path, /*verify=*/false);  // opening without the scan still works
  EXPECT_EQ(unchecked.num_tokens(), 1000);

  fresh();
  poke(path, 8, 9);  // version
  expect_has(error_of([&] { TokenFile f(path); }),
             "has format version 9; this autotp reads version 1");

  std::filesystem::resize_file(path, 10);
  expect_has(error_of([&] { TokenFile f(path); }), "shorter than its 64-byte header");
  expect_has(error_of([&] { TokenFile f(temp_path("missing.tok")); }), "cannot open token file");
}

TEST(TokenFile, IdsBeyondTheModelVocabularyAreNamed) {
  std::string path = temp_path("big_ids.tok");
  write_token_file(path, {1, 2, 5000, 3, 4000}, {6000, 1, 0, 0});
  TokenFile f(path);
  EXPECT_EQ(error_of([&] { f.check_vocab(2048); }),
            "token file " + path +
                " has id 5000 but the model's vocab_size is 2048: tokenizer and model do not match "
                "(tokenize with the model's tokenizer, or use a model whose vocab_size is at least "
                "5001)");
  f.check_vocab(5001);
  expect_has(error_of([&] {
               write_token_file(path, {1, 2048}, {2048, 1, 0, 0});
             }),
             "token 1 is id 2048, not below vocab_size 2048");
  expect_has(error_of([&] { f.check_tokenizer(42, "tok.json"); }),
             "was made with another tokenizer than tok.json");
}

TEST(Corpus, DocumentsAreSplitAtBlankLines) {
  std::string text = "\n\nGenesis 1\nverse one\r\nverse two\n\n\n\r\nExodus 1\nverse\n";
  auto docs = split_documents(text, DocumentSplit::BlankLine);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0], "Genesis 1\nverse one\r\nverse two");
  EXPECT_EQ(docs[1], "Exodus 1\nverse");
  EXPECT_EQ(split_documents(text, DocumentSplit::Line).size(), 5u);
  EXPECT_EQ(split_documents(text, DocumentSplit::None).size(), 1u);
}

TEST(Corpus, TokenizedDocumentsAreJoinedByEndOfText) {
  const std::string root = AUTOTP_SOURCE_DIR;
  Tokenizer tok = Tokenizer::from_file(root + "/share/tokenizer/tokenizer.json");
  std::string in = temp_path("corpus.txt"), out = temp_path("corpus.tok");
  std::vector<std::string> docs = {"In the beginning God created the heaven and the earth.",
                                   "Genesis 2\nThus the heavens and the earth were finished.",
                                   "Amen."};
  {
    std::ofstream f(in, std::ios::binary);
    f << docs[0] << "\n\n" << docs[1] << "\n\n\n" << docs[2] << "\n";
  }
  CorpusStats st = tokenize_corpus(tok, in, out, DocumentSplit::BlankLine);
  EXPECT_EQ(st.documents, 3);
  TokenFile f(out);
  EXPECT_EQ(f.num_tokens(), st.tokens);
  EXPECT_EQ(f.vocab_size(), 2048);
  EXPECT_EQ(f.info().num_documents, 3);
  EXPECT_EQ(f.info().eos_id, 0u);
  f.check_tokenizer(tok.fingerprint(), "the shipped tokenizer");
  // Cut at the eos ids: each part decodes to its document.
  std::vector<std::vector<uint32_t>> parts(1);
  for (int64_t i = 0; i < f.num_tokens(); ++i) {
    if (f[i] == 0)
      parts.emplace_back();
    else
      parts.back().push_back(f[i]);
  }
  ASSERT_EQ(parts.size(), 3u);
  for (size_t d = 0; d < 3; ++d) {
    EXPECT_EQ(tok.decode(parts[d]), docs[d]);
    EXPECT_EQ(parts[d], tok.encode(docs[d]));
  }
}

#ifdef AUTOTP_TOKENIZE_EXE
namespace {
// Runs the tool; returns its exit status and puts its output in `out`.
int run_tool(const std::string& args, std::string& out) {
  std::string log = temp_path("tool.log");
  int rc =
      std::system((std::string(AUTOTP_TOKENIZE_EXE) + " " + args + " > " + log + " 2>&1").c_str());
  out = read_file_bytes(log, "tool log");
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}
}  // namespace

TEST(Tool, AutotpTokenizeTrainsAndEncodes) {
  const std::string root = AUTOTP_SOURCE_DIR;
  std::string out, tok_json = temp_path("trained.json"), tok_file = temp_path("kjv.tok");
  std::string corpus = temp_path("small.txt");
  {
    std::ofstream f(corpus, std::ios::binary);
    f << read_file_bytes(root + "/share/corpus/kjv.txt", "corpus").substr(0, 100000);
  }
  ASSERT_EQ(run_tool("--train --vocab_size 600 --input " + corpus + " --output " + tok_json, out),
            0)
      << out;
  Tokenizer trained = Tokenizer::from_file(tok_json);
  EXPECT_EQ(trained.vocab_size(), 600);

  ASSERT_EQ(run_tool("--tokenizer " + root + "/share/tokenizer/tokenizer.json --input " + root +
                         "/share/corpus/kjv.txt --output " + tok_file,
                     out),
            0)
      << out;
  TokenFile f(tok_file);
  EXPECT_EQ(f.info().num_documents, 450);  // the chapters of the 14 books
  EXPECT_EQ(f.vocab_size(), 2048);
  f.check_vocab(2048);
  int64_t eos = 0;
  for (int64_t i = 0; i < f.num_tokens(); ++i) eos += f[i] == 0;
  EXPECT_EQ(eos, 449);

  EXPECT_EQ(run_tool("--input x", out), 1);
  EXPECT_NE(out.find("autotp-tokenize: error: --input and --output are required"),
            std::string::npos)
      << out;
  EXPECT_EQ(run_tool("--tokenizer " + tok_json + " --input " + corpus + " --output " + tok_file +
                         " --eos '<|im_sep|>'",
                     out),
            1);
  EXPECT_NE(out.find("has no added token '<|im_sep|>'"), std::string::npos) << out;
}
#endif
