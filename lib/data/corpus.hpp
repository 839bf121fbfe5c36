#pragma once
// Turning a text corpus into a token file: documents encoded one by one and joined by the
// end-of-text token (doc0 <eos> doc1 <eos> ... docN-1).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.hpp"

namespace autotp {

enum class DocumentSplit {
  BlankLine,  // documents are separated by one or more blank lines (share/corpus/kjv.txt: chapters)
  Line,       // one document per non-empty line
  None,       // the whole file is one document
};
DocumentSplit parse_document_split(const std::string& name);  // "blank_line" | "line" | "none"

// The documents of text, without the blank lines around them.
std::vector<std::string_view> split_documents(std::string_view text, DocumentSplit how);

struct CorpusStats {
  int64_t bytes = 0, documents = 0, tokens = 0;
};

// Encodes the documents, joins them with eos_token (an added token of the tokenizer) and
// writes the token file at output_path.
CorpusStats tokenize_corpus(const Tokenizer& tok, const std::string& input_path,
                            const std::string& output_path, DocumentSplit how,
                            const std::string& eos_token = "<|endoftext|>");

// The whole file as bytes (an Error naming it when it cannot be read).
std::string read_file_bytes(const std::string& path, const char* what);

}  // namespace autotp
