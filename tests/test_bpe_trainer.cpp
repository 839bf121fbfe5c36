// The BPE trainer: merges worked out by hand on a tiny corpus, the documented tie rule, and
// determinism: retraining on share/corpus/kjv.txt reproduces the shipped tokenizer exactly
// (test_tokenizer shows HF encodes with that file as we do).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "data/bpe_trainer.hpp"
#include "data/corpus.hpp"

using namespace autotp;
using Merges = std::vector<std::pair<std::string, std::string>>;

namespace {

BpeTrainerOptions opts(int64_t vocab_size) {
  BpeTrainerOptions o;
  o.vocab_size = vocab_size;
  return o;
}

}  // namespace

TEST(BpeTrainer, MergesTheMostFrequentPairAndBreaksTiesByBytes) {
  // cl100k words: "ab" " ab" " ab" " cd" " cd". Counts: (a,b) 3, (' ',a) 2, (' ',c) 2, (c,d) 2.
  //  1. (a,b) 3.  Then (' ',ab) 2, (' ',c) 2, (c,d) 2 tie: ' ' < 'c', and "ab" < "c":
  //  2. (' ',ab).  3. (' ',c) (left ' ' sorts before 'c').  4. (' c',d).
  TokenizerSpec s = train_bpe("ab ab ab cd cd", opts(3 + 256 + 4));
  EXPECT_EQ(s.merges, (Merges{{"a", "b"},
                              {"\xC4\xA0", "ab"},
                              {"\xC4\xA0", "c"},
                              {"\xC4\xA0"
                               "c",
                               "d"}}));
  ASSERT_EQ(s.vocab.size(), 263u);
  EXPECT_EQ(s.vocab[0], (std::pair<std::string, uint32_t>{"<|endoftext|>", 0}));
  EXPECT_EQ(s.vocab[3 + ' '].first, "\xC4\xA0");  // bytes follow the specials, in byte order
  EXPECT_EQ(s.vocab[259], (std::pair<std::string, uint32_t>{"ab", 259}));
  EXPECT_EQ(s.vocab[262], (std::pair<std::string, uint32_t>{"\xC4\xA0"
                                                            "cd",
                                                            262}));
  ASSERT_EQ(s.added_tokens.size(), 3u);
  EXPECT_TRUE(s.added_tokens[2].special);
  EXPECT_EQ(s.added_tokens[2].content, "<|im_end|>");

  Tokenizer tok(s);
  EXPECT_EQ(tok.encode("ab cd<|endoftext|> ab"), (std::vector<uint32_t>{259, 262, 0, 260}));
}

TEST(BpeTrainer, SpecialTokensInTheCorpusAreNotLearned) {
  // "<|endoftext|>" is cut out before counting, so no merge can contain its bytes across it.
  TokenizerSpec s = train_bpe("xy<|endoftext|>xy<|endoftext|>xy", opts(3 + 256 + 1));
  EXPECT_EQ(s.merges, (Merges{{"x", "y"}}));
}

TEST(BpeTrainer, ImpossibleVocabSizesAreErrors) {
  try {
    train_bpe("abc", opts(200));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab_size 200 is too small"), std::string::npos)
        << e.what();
  }
  try {
    train_bpe("abab", opts(3 + 256 + 10));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ran out of pairs to merge at vocabulary size 261"),
              std::string::npos)
        << e.what();
  }
}

TEST(BpeTrainer, RetrainingReproducesTheShippedTokenizer) {
  const std::string root = AUTOTP_SOURCE_DIR;
  std::string text = read_file_bytes(root + "/share/corpus/kjv.txt", "corpus");
  auto t0 = std::chrono::steady_clock::now();
  Tokenizer fresh(train_bpe(text, opts(2048)));
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("trained on %zu bytes in %.2f s\n", text.size(), s);
  Tokenizer shipped = Tokenizer::from_file(root + "/share/tokenizer/tokenizer.json");
  EXPECT_EQ(fresh.spec().vocab, shipped.spec().vocab);
  EXPECT_EQ(fresh.spec().merges, shipped.spec().merges);
  EXPECT_EQ(fresh.fingerprint(), shipped.fingerprint());
  // Byte for byte, so the committed file is exactly what autotp-tokenize --train writes.
  EXPECT_EQ(fresh.to_json(),
            read_file_bytes(root + "/share/tokenizer/tokenizer.json", "tokenizer"));
}
