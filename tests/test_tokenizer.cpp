// Our tokenizer against Hugging Face `tokenizers` 0.23.3: every expected id and split below was
// produced by tests/fixtures/data/make_tokenizer_fixtures.py.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/fnv1a.hpp"
#include "data/byte_level.hpp"
#include "data/corpus.hpp"
#include "data/pretokenizer.hpp"
#include "data/tokenizer.hpp"
#include "data/unicode.hpp"
#include "test_util.hpp"

using namespace autotp;
using nlohmann::json;

namespace {

const std::string kFixtures = std::string(AUTOTP_SOURCE_DIR) + "/tests/fixtures/data/";
const std::string kShipped = std::string(AUTOTP_SOURCE_DIR) + "/share/tokenizer/tokenizer.json";

json load_json(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f) << path;
  return json::parse(f);
}

std::string temp_path(const std::string& name) {
  return std::string(AUTOTP_BINARY_DIR) + "/test_tokenizer_" + name;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// Ids of every fixture string must equal HF's; decode must give the string back.
void expect_fixture_ids(const Tokenizer& tok, const json& fx, const char* key, bool round_trip) {
  const auto& strings = fx["strings"];
  const auto& ids = fx[key];
  ASSERT_EQ(strings.size(), ids.size());
  for (size_t i = 0; i < strings.size(); ++i) {
    std::string s = strings[i].get<std::string>();
    std::vector<uint32_t> want = ids[i].get<std::vector<uint32_t>>();
    std::vector<uint32_t> got = tok.encode(s);
    EXPECT_EQ(got, want) << key << " string " << i << ": " << json(s).dump();
    if (round_trip) {
      EXPECT_EQ(tok.decode(got), s) << "string " << i;
    }
  }
}

// The whole KJV corpus encoded; HF's ids for it are known by count and FNV-1a digest.
void expect_corpus_digest(const Tokenizer& tok, const json& fx) {
  std::string text =
      read_file_bytes(std::string(AUTOTP_SOURCE_DIR) + "/share/corpus/kjv.txt", "corpus");
  std::vector<uint32_t> ids = tok.encode(text);
  EXPECT_EQ(int64_t(ids.size()), fx["corpus"]["tokens"].get<int64_t>());
  uint64_t h = fnv1a(ids.data(), ids.size() * sizeof(uint32_t));  // little-endian uint32 bytes
  EXPECT_EQ(std::to_string(h), fx["corpus"]["fnv1a_u32le"].get<std::string>());
}

}  // namespace

TEST(Unicode, ClassesAndWhiteSpaceOfUnicode16) {
  EXPECT_STREQ(kUnicodeVersion, "16.0.0");
  EXPECT_EQ(unicode_class('A'), UClass::Lu);
  EXPECT_EQ(unicode_class('z'), UClass::Ll);
  EXPECT_EQ(unicode_class(0x01C5), UClass::Lt);      // ǅ
  EXPECT_EQ(unicode_class(0x02B0), UClass::Lm);      // ʰ
  EXPECT_EQ(unicode_class(0x4E2D), UClass::Lo);      // 中
  EXPECT_EQ(unicode_class(0x0301), UClass::Mark);    // combining acute (Mn)
  EXPECT_EQ(unicode_class(0x0903), UClass::Mark);    // Devanagari visarga (Mc)
  EXPECT_EQ(unicode_class(0x0663), UClass::Number);  // Arabic-Indic three (Nd)
  EXPECT_EQ(unicode_class(0x216B), UClass::Number);  // Ⅻ (Nl)
  EXPECT_EQ(unicode_class(0x1D400), UClass::Lu);     // mathematical bold A (outside the BMP)
  EXPECT_EQ(unicode_class(0x10D50), UClass::Lu);     // Garay capital A: new in Unicode 16
  EXPECT_EQ(unicode_class(0x1F600), UClass::Other);  // 😀
  EXPECT_EQ(unicode_class(0x10FFFF), UClass::Other);
  for (uint32_t cp : {0x09u, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x200Au, 0x2028u, 0x3000u})
    EXPECT_TRUE(is_white_space(cp)) << cp;
  for (uint32_t cp : {0x08u, 0x1Cu, 0x200Bu, 0x180Eu, 0xFEFFu})
    EXPECT_FALSE(is_white_space(cp)) << cp;
}

TEST(Unicode, InvalidUtf8DecodesOneByteAtATime) {
  auto dec = [](const std::string& s) {
    return decode_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size());
  };
  Utf8Char ok = dec("\xE4\xB8\xAD");  // 中
  EXPECT_TRUE(ok.valid);
  EXPECT_EQ(ok.cp, 0x4E2Du);
  EXPECT_EQ(ok.len, 3);
  for (std::string bad :
       {"\x80", "\xFF", "\xE4\xB8", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80"}) {
    Utf8Char c = dec(bad);
    EXPECT_FALSE(c.valid) << json::binary({bad.begin(), bad.end()}).dump();
    EXPECT_EQ(c.len, 1);
    EXPECT_EQ(c.cp, 0xFFFDu);
  }
}

TEST(ByteLevel, Gpt2Alphabet) {
  EXPECT_EQ(byte_to_char(' '), 0x120u);   // Ġ
  EXPECT_EQ(byte_to_char('\n'), 0x10Au);  // Ċ
  EXPECT_EQ(byte_to_char('a'), uint32_t('a'));
  EXPECT_EQ(byte_to_char(0xAD), 0x143u);  // the last of the 68 remapped bytes
  for (int b = 0; b < 256; ++b) EXPECT_EQ(char_to_byte(byte_to_char(uint8_t(b))), uint8_t(b));
  EXPECT_EQ(bytes_to_token(" the\n"), "\xC4\xA0the\xC4\x8A");
  EXPECT_EQ(token_to_bytes("\xC4\xA0the\xC4\x8A"), " the\n");
  EXPECT_EQ(token_to_bytes("<|im end|>"), "<|im end|>");  // ' ' is not in the alphabet: as is
}

// Splits of 300 random strings of awkward characters, per pattern, as HF's Split cut them.
TEST(PreTokenizer, SplitsLikeOnigurumaOnRandomStrings) {
  json fx = load_json(kFixtures + "pretok_splits.json");
  const std::map<std::string, const char*> ours = {{"gpt2", kGpt2Pattern},
                                                   {"cl100k", kCl100kPattern},
                                                   {"cl100k_tiktoken", kCl100kTiktokenPattern},
                                                   {"o200k", kO200kPattern}};
  for (const auto& [name, pattern] : ours) {
    ASSERT_EQ(fx["patterns"][name].get<std::string>(), pattern) << name;
    PreTokenizerSpec spec;
    spec.splits.push_back({pattern, false, false});
    PreTokenizer pre(spec);
    const auto& strings = fx["strings"];
    size_t pieces = 0;
    for (size_t i = 0; i < strings.size(); ++i) {
      std::string s = strings[i].get<std::string>();
      std::vector<std::string> want;
      size_t at = 0;
      for (size_t len : fx["splits"][name][i].get<std::vector<size_t>>()) {
        want.push_back(s.substr(at, len));
        at += len;
      }
      EXPECT_EQ(pre.pieces(s), want) << name << " string " << i << ": " << json(s).dump();
      pieces += want.size();
    }
    EXPECT_GT(pieces, 2500u) << name;  // the fixture really exercises the matcher
  }
}

TEST(PreTokenizer, InvalidUtf8SplitsLikeTheReplacementCharacter) {
  // Decision: an invalid byte is split as U+FFFD (a symbol) would be, and stays a raw byte.
  // HF cannot take such input at all (Python str / Rust String are valid UTF-8).
  PreTokenizerSpec spec;
  spec.splits.push_back({kCl100kPattern, false, false});
  PreTokenizer pre(spec);
  std::string bad =
      "ab\xFF"
      "cd \x80\x80x 'S\xE4\xB8";
  std::string fffd =
      "ab\xEF\xBF\xBD"
      "cd \xEF\xBF\xBD\xEF\xBF\xBDx 'S\xEF\xBF\xBD\xEF\xBF\xBD";
  auto p_bad = pre.pieces(bad), p_ok = pre.pieces(fffd);
  ASSERT_EQ(p_bad.size(), p_ok.size());
  EXPECT_EQ(p_bad, (std::vector<std::string>{"ab",
                                             "\xFF"
                                             "cd",
                                             " \x80\x80", "x", " '", "S", "\xE4\xB8"}));
  Tokenizer tok = Tokenizer::from_file(kShipped);
  EXPECT_EQ(tok.decode(tok.encode(bad)), bad);
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(char(b));
  EXPECT_EQ(tok.decode(tok.encode(all_bytes + all_bytes)), all_bytes + all_bytes);
}

TEST(PreTokenizer, OtherPatternsRunOnBoostOrFailClearly) {
  PreTokenizerSpec spec;
  spec.splits.push_back({R"(\d+)", false, true});  // Removed
  EXPECT_EQ(PreTokenizer(spec).pieces("ab12cd345"), (std::vector<std::string>{"ab", "cd"}));
  spec.splits[0] = {"--", true, false};  // a literal, Isolated
  EXPECT_EQ(PreTokenizer(spec).pieces("a--b---c"),
            (std::vector<std::string>{"a", "--", "b", "--", "-c"}));
  spec.splits[0] = {R"(\p{Han}+|\s+)", false, false};
  std::string m = error_of([&] { PreTokenizer p(spec); });
  EXPECT_NE(m.find(R"('\p{Han}+|\s+')"), std::string::npos) << m;
  EXPECT_NE(m.find("Unicode properties"), std::string::npos) << m;
}

TEST(Tokenizer, ShippedKjvTokenizerEncodesLikeHuggingFace) {
  Tokenizer tok = Tokenizer::from_file(kShipped);
  EXPECT_EQ(tok.vocab_size(), 2048);
  EXPECT_EQ(tok.added_token_id("<|endoftext|>"), 0u);
  EXPECT_EQ(tok.added_token_id("<|im_start|>"), 1u);
  EXPECT_EQ(tok.added_token_id("<|im_end|>"), 2u);
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_FALSE(tok.is_special(3));
  json fx = load_json(kFixtures + "kjv_expected.json");
  expect_fixture_ids(tok, fx, "ids", true);
  expect_corpus_digest(tok, fx);
}

TEST(Tokenizer, O200kStyleWithIgnoreMergesEncodesLikeHuggingFace) {
  Tokenizer tok = Tokenizer::load(kFixtures + "o200k_style/tokenizer.json");
  EXPECT_TRUE(tok.spec().ignore_merges);
  EXPECT_EQ(tok.vocab_size(), 802);
  json fx = load_json(kFixtures + "o200k_expected.json");
  expect_fixture_ids(tok, fx, "ids", false);
  expect_corpus_digest(tok, fx);
  // [MASK] (lstrip, rstrip) swallows the spaces around it; everything else round-trips.
  for (const auto& s : fx["strings"]) {
    std::string str = s.get<std::string>();
    std::string back = tok.decode(tok.encode(str));
    if (str.find("[MASK]") == std::string::npos) {
      EXPECT_EQ(back, str);
    } else {
      EXPECT_EQ(back, "see[MASK]here and[MASK]x");
    }
  }
  // " xyzzy" is one token only because of ignore_merges.
  uint32_t xyzzy = *tok.token_to_id("\xC4\xA0xyzzy");
  EXPECT_EQ(tok.encode(" xyzzy"), std::vector<uint32_t>{xyzzy});
  TokenizerSpec no_ignore = tok.spec();
  no_ignore.ignore_merges = false;
  EXPECT_GT(Tokenizer(no_ignore).encode(" xyzzy").size(), 1u);
}

TEST(Tokenizer, Gpt2VocabAndMergesEncodeLikeHuggingFace) {
  Tokenizer tok = Tokenizer::load(kFixtures + "gpt2_style");  // + added_tokens.json
  json fx = load_json(kFixtures + "gpt2_expected.json");
  expect_fixture_ids(tok, fx, "ids", true);
  const std::string dir = kFixtures + "gpt2_style/";
  AddedToken eot{"<|endoftext|>", tok.added_token_id("<|endoftext|>"), true};
  Tokenizer spaced = Tokenizer::from_vocab_merges(dir + "vocab.json", dir + "merges.txt", {eot},
                                                  /*add_prefix_space=*/true);
  expect_fixture_ids(spaced, fx, "ids_add_prefix_space", false);
}

TEST(Tokenizer, JsonRoundTripKeepsEncodingAndFingerprint) {
  Tokenizer a = Tokenizer::from_file(kFixtures + "o200k_style/tokenizer.json");
  std::string path = temp_path("o200k.json");
  a.save(path);
  Tokenizer b = Tokenizer::from_file(path);
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  std::string text = "<|im_start|>Hello [MASK] wörld 1234 xyzzy\r\n";
  EXPECT_EQ(a.encode(text), b.encode(text));
  Tokenizer kjv = Tokenizer::from_file(kShipped);
  EXPECT_NE(kjv.fingerprint(), a.fingerprint());
}

TEST(Tokenizer, MergesAsStringsOrPairsAreTheSame) {
  json j = load_json(kShipped);
  json strings = json::array();
  for (const auto& m : j["model"]["merges"])
    strings.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  j["model"]["merges"] = strings;
  std::string path = temp_path("string_merges.json");
  write_text(path, j.dump());
  Tokenizer a = Tokenizer::from_file(kShipped), b = Tokenizer::from_file(path);
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  std::string verse = "For God so loved the world, that he gave his only begotten Son.";
  EXPECT_EQ(a.encode(verse), b.encode(verse));
}

TEST(Tokenizer, BadFilesGetOneClearError) {
  json good = load_json(kShipped);
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = good;
    edit(j);
    std::string path = temp_path("bad.json");
    write_text(path, j.dump());
    return error_of([&] { Tokenizer::from_file(path); });
  };
  std::string m = with([](json& j) { j["model"]["merges"].push_back({"zq", "x"}); });
  EXPECT_NE(m.find("model.merges[1789] 'zq x': 'zq' is not in model.vocab"), std::string::npos)
      << m;
  m = with([](json& j) { j["normalizer"] = {{"type", "NFC"}}; });
  EXPECT_NE(m.find("normalizer of type 'NFC' is not supported"), std::string::npos) << m;
  m = with([](json& j) { j["added_tokens"][0]["single_word"] = true; });
  EXPECT_NE(m.find("'<|endoftext|>' has single_word=true"), std::string::npos) << m;
  m = with([](json& j) { j["model"]["type"] = "Unigram"; });
  EXPECT_NE(m.find("autotp reads byte-level BPE tokenizers only"), std::string::npos) << m;
  m = with(
      [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = R"(\p{L}+)"; });
  EXPECT_NE(m.find(R"(pattern '\p{L}+')"), std::string::npos) << m;
  m = error_of([] { Tokenizer::from_file(temp_path("does_not_exist.json")); });
  EXPECT_NE(m.find("cannot open tokenizer file"), std::string::npos) << m;
  m = error_of([] { Tokenizer::from_file(kShipped).added_token_id("<|im_sep|>"); });
  EXPECT_NE(m.find("has no added token '<|im_sep|>'"), std::string::npos) << m;
}

// The whole shipped corpus: a few MB must take seconds, and come back byte for byte.
TEST(Tokenizer, EncodesTheKjvCorpusQuicklyAndLosslessly) {
  Tokenizer tok = Tokenizer::from_file(kShipped);
  std::string text =
      read_file_bytes(std::string(AUTOTP_SOURCE_DIR) + "/share/corpus/kjv.txt", "corpus");
  auto t0 = std::chrono::steady_clock::now();
  std::vector<uint32_t> ids = tok.encode(text);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("encoded %zu bytes into %zu tokens in %.3f s (%.1f MB/s)\n", text.size(), ids.size(),
              s, text.size() / s / 1e6);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_LT(ids.size(), text.size() / 3);  // 2048 tokens compress English well over 3x
  EXPECT_LT(s, 20.0);
}
