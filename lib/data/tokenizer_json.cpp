// Reading and writing the files a tokenizer comes in: Hugging Face tokenizer.json, and GPT-2's
// vocab.json + merges.txt.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "data/tokenizer.hpp"

namespace autotp {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_text(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  check(bool(f), "cannot open ", what, " '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(const std::string& path, const char* what) {
  try {
    return json::parse(read_text(path, what));
  } catch (const json::exception& e) {
    fail(what, " '", path, "' is not valid JSON: ", e.what());
  }
}

// Reads an optional field of the expected type; `where` names the file and field in errors.
template <typename T>
T get_or(const json& obj, const char* key, T dflt, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return dflt;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail(where, ".", key, " has the wrong type (", it->type_name(), ")");
  }
}

std::vector<std::pair<std::string, uint32_t>> read_vocab(const json& v, const std::string& where) {
  check(v.is_object(), where, " must be an object {token: id}");
  std::vector<std::pair<std::string, uint32_t>> out;
  out.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it) {
    check(it.value().is_number_unsigned(), where, "['", it.key(), "'] must be a non-negative id");
    out.emplace_back(it.key(), it.value().get<uint32_t>());
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.second < b.second; });
  return out;
}

std::pair<std::string, std::string> split_merge(const std::string& line, const std::string& where) {
  size_t sp = line.find(' ');
  check(sp != std::string::npos && line.find(' ', sp + 1) == std::string::npos, where, ": merge '",
        line, "' must be two tokens separated by one space");
  return {line.substr(0, sp), line.substr(sp + 1)};
}

AddedToken read_added(const json& t, const std::string& where) {
  check(t.is_object() && t.contains("id") && t.contains("content"), where,
        " must be an object with id and content");
  AddedToken a;
  a.id = get_or<uint32_t>(t, "id", 0, where);
  a.content = get_or<std::string>(t, "content", "", where);
  a.special = get_or<bool>(t, "special", false, where);
  a.lstrip = get_or<bool>(t, "lstrip", false, where);
  a.rstrip = get_or<bool>(t, "rstrip", false, where);
  a.normalized = get_or<bool>(t, "normalized", !a.special, where);
  a.single_word = get_or<bool>(t, "single_word", false, where);
  return a;
}

void read_byte_level(const json& p, PreTokenizerSpec& out, const std::string& where) {
  out.add_prefix_space = get_or<bool>(p, "add_prefix_space", true, where);
  out.byte_level_regex = get_or<bool>(p, "use_regex", true, where);
}

PreTokenizerSpec read_pre_tokenizer(const json& p, const std::string& where) {
  PreTokenizerSpec out;
  if (p.is_null()) return out;
  std::string type = get_or<std::string>(p, "type", "", where);
  if (type == "ByteLevel") {
    read_byte_level(p, out, where);
    return out;
  }
  check(type == "Sequence", where, " of type '", type,
        "' is not supported: autotp reads ByteLevel, or a Sequence of Split steps and a final "
        "ByteLevel");
  const json& steps = p.value("pretokenizers", json::array());
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string w = where + ".pretokenizers[" + std::to_string(i) + "]";
    std::string t = get_or<std::string>(steps[i], "type", "", w);
    if (t == "ByteLevel") {
      check(i + 1 == steps.size(), w, ": ByteLevel must be the last pre-tokenizer");
      read_byte_level(steps[i], out, w);
      continue;
    }
    check(t == "Split", w, " of type '", t, "' is not supported (Split and ByteLevel are)");
    SplitStep s;
    const json& pat = steps[i].value("pattern", json::object());
    if (pat.contains("Regex")) {
      s.pattern = get_or<std::string>(pat, "Regex", "", w + ".pattern");
    } else {
      check(pat.contains("String"), w, ".pattern must be {\"Regex\": ...} or {\"String\": ...}");
      s.pattern = get_or<std::string>(pat, "String", "", w + ".pattern");
      s.literal = true;
    }
    std::string behavior = get_or<std::string>(steps[i], "behavior", "Isolated", w);
    check(behavior == "Isolated" || behavior == "Removed", w, ".behavior '", behavior,
          "' is not supported (Isolated and Removed are)");
    s.remove_matches = behavior == "Removed";
    check(!get_or<bool>(steps[i], "invert", false, w), w, ".invert=true is not supported");
    out.splits.push_back(std::move(s));
  }
  return out;
}

std::string tmp_name(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  json j = parse_json(path, "tokenizer file");
  check(j.is_object() && j.contains("model"), "tokenizer file '", path,
        "' has no 'model': is it a Hugging Face tokenizer.json?");
  const json& m = j["model"];
  const std::string where = path + ": model";
  std::string type = get_or<std::string>(m, "type", "BPE", where);
  check(type == "BPE", where, ".type is '", type, "': autotp reads byte-level BPE tokenizers only");
  check(!get_or<bool>(m, "byte_fallback", false, where), where,
        ".byte_fallback=true is not supported (byte-level BPE never needs it)");
  check(m.value("dropout", json()).is_null(), where,
        ".dropout is set: BPE dropout makes encoding random; set it to null");
  check(get_or<std::string>(m, "continuing_subword_prefix", "", where).empty() &&
            get_or<std::string>(m, "end_of_word_suffix", "", where).empty(),
        where, ": continuing_subword_prefix/end_of_word_suffix are not supported");
  const json& norm = j.value("normalizer", json());
  bool empty_sequence = norm.is_object() && norm.value("type", "") == "Sequence" &&
                        norm.value("normalizers", json::array()).empty();
  check(norm.is_null() || empty_sequence, path, ": normalizer of type '",
        norm.is_object() ? norm.value("type", "?") : std::string("?"),
        "' is not supported: autotp tokenizes text as given (normalizer: null)");

  TokenizerSpec spec;
  check(m.contains("vocab"), where, " has no vocab");
  spec.vocab = read_vocab(m["vocab"], where + ".vocab");
  const json& merges = m.value("merges", json::array());
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& x = merges[i];
    std::string w = where + ".merges[" + std::to_string(i) + "]";
    if (x.is_string()) {
      spec.merges.push_back(split_merge(x.get<std::string>(), w));
    } else {
      check(x.is_array() && x.size() == 2 && x[0].is_string() && x[1].is_string(), w,
            " must be \"a b\" or [\"a\", \"b\"]");
      spec.merges.emplace_back(x[0].get<std::string>(), x[1].get<std::string>());
    }
  }
  spec.ignore_merges = get_or<bool>(m, "ignore_merges", false, where);
  spec.unk_token = get_or<std::string>(m, "unk_token", "", where);
  spec.fuse_unk = get_or<bool>(m, "fuse_unk", false, where);
  const json& added = j.value("added_tokens", json::array());
  for (size_t i = 0; i < added.size(); ++i)
    spec.added_tokens.push_back(
        read_added(added[i], path + ": added_tokens[" + std::to_string(i) + "]"));
  spec.pre_tokenizer =
      read_pre_tokenizer(j.value("pre_tokenizer", json()), path + ": pre_tokenizer");
  return Tokenizer(std::move(spec), path);
}

Tokenizer Tokenizer::from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt,
                                       std::vector<AddedToken> added, bool add_prefix_space) {
  TokenizerSpec spec;
  spec.vocab = read_vocab(parse_json(vocab_json, "vocabulary file"), vocab_json);
  std::istringstream lines(read_text(merges_txt, "merges file"));
  std::string line;
  for (size_t n = 1; std::getline(lines, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (n == 1 && line.rfind("#version", 0) == 0)) continue;
    spec.merges.push_back(split_merge(line, merges_txt + ":" + std::to_string(n)));
  }
  spec.added_tokens = std::move(added);
  spec.pre_tokenizer.byte_level_regex = true;
  spec.pre_tokenizer.add_prefix_space = add_prefix_space;
  return Tokenizer(std::move(spec), vocab_json);
}

Tokenizer Tokenizer::load(const std::string& path) {
  if (!fs::is_directory(path)) return from_file(path);
  fs::path dir(path);
  if (fs::exists(dir / "tokenizer.json")) return from_file((dir / "tokenizer.json").string());
  check(fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt"), "directory '", path,
        "' holds neither tokenizer.json nor vocab.json + merges.txt");
  std::vector<AddedToken> added;
  if (fs::exists(dir / "added_tokens.json")) {
    std::string f = (dir / "added_tokens.json").string();
    json a = parse_json(f, "added tokens file");
    check(a.is_object(), f, " must be an object {content: id}");
    for (auto it = a.begin(); it != a.end(); ++it) {
      check(it.value().is_number_unsigned(), f, "['", it.key(), "'] must be a non-negative id");
      AddedToken t;
      t.content = it.key();
      t.id = it.value().get<uint32_t>();
      t.special = true;
      added.push_back(t);
    }
  }
  return from_vocab_merges((dir / "vocab.json").string(), (dir / "merges.txt").string(),
                           std::move(added));
}

std::string Tokenizer::to_json() const {
  using ojson = nlohmann::ordered_json;
  const TokenizerSpec& s = spec();
  ojson added = ojson::array();
  std::vector<AddedToken> sorted = s.added_tokens;
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.id < b.id; });
  for (const AddedToken& t : sorted)
    added.push_back({{"id", t.id},
                     {"content", t.content},
                     {"single_word", t.single_word},
                     {"lstrip", t.lstrip},
                     {"rstrip", t.rstrip},
                     {"normalized", t.normalized},
                     {"special", t.special}});
  ojson byte_level = {{"type", "ByteLevel"},
                      {"add_prefix_space", s.pre_tokenizer.add_prefix_space},
                      {"trim_offsets", true},
                      {"use_regex", s.pre_tokenizer.byte_level_regex}};
  ojson pre = byte_level;
  if (!s.pre_tokenizer.splits.empty()) {
    ojson steps = ojson::array();
    for (const SplitStep& st : s.pre_tokenizer.splits)
      steps.push_back({{"type", "Split"},
                       {"pattern", {{st.literal ? "String" : "Regex", st.pattern}}},
                       {"behavior", st.remove_matches ? "Removed" : "Isolated"},
                       {"invert", false}});
    steps.push_back(byte_level);
    pre = {{"type", "Sequence"}, {"pretokenizers", steps}};
  }
  ojson vocab = ojson::object();
  for (const auto& [tok, id] : s.vocab) vocab[tok] = id;
  ojson merges = ojson::array();
  for (const auto& [a, b] : s.merges) merges.push_back({a, b});
  ojson j = {{"version", "1.0"},
             {"truncation", nullptr},
             {"padding", nullptr},
             {"added_tokens", added},
             {"normalizer", nullptr},
             {"pre_tokenizer", pre},
             {"post_processor", nullptr},
             {"decoder",
              {{"type", "ByteLevel"},
               {"add_prefix_space", true},
               {"trim_offsets", true},
               {"use_regex", true}}},
             {"model",
              {{"type", "BPE"},
               {"dropout", nullptr},
               {"unk_token", s.unk_token.empty() ? ojson() : ojson(s.unk_token)},
               {"continuing_subword_prefix", nullptr},
               {"end_of_word_suffix", nullptr},
               {"fuse_unk", s.fuse_unk},
               {"byte_fallback", false},
               {"ignore_merges", s.ignore_merges},
               {"vocab", vocab},
               {"merges", merges}}}};
  return j.dump(2) + "\n";
}

void Tokenizer::save(const std::string& path) const {
  std::string tmp = tmp_name(path);
  {
    std::ofstream f(tmp, std::ios::binary);
    check(bool(f), "cannot write tokenizer file '", tmp, "'");
    f << to_json();
    check(bool(f.flush()), "writing tokenizer file '", tmp, "' failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  check(!ec, "cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

}  // namespace autotp
