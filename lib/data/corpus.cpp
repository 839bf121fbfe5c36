#include "data/corpus.hpp"

#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "data/token_file.hpp"

namespace autotp {

DocumentSplit parse_document_split(const std::string& name) {
  if (name == "blank_line") return DocumentSplit::BlankLine;
  if (name == "line") return DocumentSplit::Line;
  if (name == "none") return DocumentSplit::None;
  fail("document split '", name, "' is not one of blank_line, line, none");
}

std::string read_file_bytes(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  check(bool(f), "cannot open ", what, " '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string_view> split_documents(std::string_view text, DocumentSplit how) {
  std::vector<std::string_view> docs;
  if (how == DocumentSplit::None) {
    if (!text.empty()) docs.push_back(text);
    return docs;
  }
  // Walk the lines; a blank line (empty, or a lone \r) ends the current document.
  size_t doc_begin = std::string_view::npos, doc_end = 0;
  auto flush = [&] {
    if (doc_begin != std::string_view::npos)
      docs.push_back(text.substr(doc_begin, doc_end - doc_begin));
    doc_begin = std::string_view::npos;
  };
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    bool blank = line.empty() || line == "\r";
    if (blank) {
      flush();
    } else {
      if (doc_begin == std::string_view::npos) doc_begin = pos;
      doc_end = line.back() == '\r' ? end - 1 : end;
      if (how == DocumentSplit::Line) flush();
    }
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  flush();
  return docs;
}

CorpusStats tokenize_corpus(const Tokenizer& tok, const std::string& input_path,
                            const std::string& output_path, DocumentSplit how,
                            const std::string& eos_token) {
  const uint32_t eos = tok.added_token_id(eos_token);
  std::string text = read_file_bytes(input_path, "corpus");
  std::vector<std::string_view> docs = split_documents(text, how);
  check(!docs.empty(), "corpus '", input_path, "' holds no text");
  std::vector<uint32_t> ids;
  ids.reserve(text.size() / 3);
  for (size_t d = 0; d < docs.size(); ++d) {
    if (d > 0) ids.push_back(eos);
    tok.encode(docs[d], ids);
  }
  TokenFileInfo info;
  info.vocab_size = tok.vocab_size();
  info.num_documents = int64_t(docs.size());
  info.eos_id = eos;
  info.tokenizer_hash = tok.fingerprint();
  write_token_file(output_path, ids, info);
  return {int64_t(text.size()), int64_t(docs.size()), int64_t(ids.size())};
}

}  // namespace autotp
