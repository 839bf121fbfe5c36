// autotp-tokenize: text corpus -> token file, or (--train) text corpus -> tokenizer.json.
//
//   autotp-tokenize --tokenizer share/tokenizer/tokenizer.json --input corpus.txt --output
//   corpus.tok autotp-tokenize --train --vocab_size 2048 --input share/corpus/kjv.txt --output
//   tokenizer.json
#include <boost/program_options.hpp>
#include <chrono>
#include <iostream>

#include "core/cli.hpp"
#include "core/error.hpp"
#include "data/bpe_trainer.hpp"
#include "data/corpus.hpp"
#include "data/tokenizer.hpp"

namespace po = boost::program_options;
using namespace autotp;

namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  for (size_t e; (e = s.find(',', b)) != std::string::npos; b = e + 1)
    out.push_back(s.substr(b, e - b));
  out.push_back(s.substr(b));
  return out;
}

int run(int argc, char** argv) {
  po::options_description opts(
      "autotp-tokenize: encode a text corpus into a token file, or train a byte-level BPE "
      "tokenizer on it (--train)");
  opts.add_options()("help,h", "this help")("input", po::value<std::string>(),
                                            "text corpus (UTF-8)")(
      "output", po::value<std::string>(), "token file to write, or tokenizer.json with --train")(
      "tokenizer", po::value<std::string>(),
      "tokenizer.json, or a directory with tokenizer.json or vocab.json + merges.txt")(
      "split", po::value<std::string>()->default_value("blank_line"),
      "how the corpus divides into documents: blank_line, line or none")(
      "eos", po::value<std::string>()->default_value("<|endoftext|>"),
      "the added token placed between documents")("train", po::bool_switch(),
                                                  "train a tokenizer instead of encoding")(
      "vocab_size", po::value<int64_t>()->default_value(2048),
      "with --train: vocabulary size, special tokens and the 256 bytes included")(
      "special_tokens",
      po::value<std::string>()->default_value("<|endoftext|>,<|im_start|>,<|im_end|>"),
      "with --train: comma-separated special tokens, ids 0, 1, ...");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, vm, "")) return 0;
  check(vm.count("input") && vm.count("output"), "--input and --output are required (see --help)");
  const std::string input = vm["input"].as<std::string>(), output = vm["output"].as<std::string>();
  auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };

  if (vm["train"].as<bool>()) {
    BpeTrainerOptions o;
    o.vocab_size = vm["vocab_size"].as<int64_t>();
    o.special_tokens = split_commas(vm["special_tokens"].as<std::string>());
    std::string text = read_file_bytes(input, "corpus");
    Tokenizer tok(train_bpe(text, o), output);
    tok.save(output);
    std::cout << "trained a " << tok.vocab_size() << "-token byte-level BPE on " << text.size()
              << " bytes of " << input << " in " << seconds() << " s -> " << output << "\n";
    return 0;
  }

  check(vm.count("tokenizer"), "--tokenizer is required to encode (or pass --train)");
  Tokenizer tok = Tokenizer::load(vm["tokenizer"].as<std::string>());
  CorpusStats st =
      tokenize_corpus(tok, input, output, parse_document_split(vm["split"].as<std::string>()),
                      vm["eos"].as<std::string>());
  std::cout << "tokenized " << st.bytes << " bytes in " << st.documents << " documents into "
            << st.tokens << " tokens ("
            << double(st.bytes) / double(std::max<int64_t>(st.tokens, 1))
            << " bytes/token, vocab_size " << tok.vocab_size() << ") in " << seconds() << " s -> "
            << output << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return tool_main("autotp-tokenize", [&] { return run(argc, argv); });
}
