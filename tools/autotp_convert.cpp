// autotp-convert: Hugging Face checkpoint directory <-> autotp model file (HDF5).
//   autotp-convert HF_DIR OUT.h5 [--merge_lora vision|speech] [--dtype keep|F32|BF16|F16]
//   autotp-convert IN.h5 HF_DIR  [--dtype ...] [--max_shard_size 5GB]
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>

#include "core/cli.hpp"
#include "core/error.hpp"
#include "io/hf_checkpoint.hpp"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string in, out, to, max_shard;
  autotp::ConvertOptions opt;
  po::options_description named("Options");
  named.add_options()("help,h", "show this help")(
      "to", po::value(&to), "h5 or hf (default: h5 when INPUT is a directory, else hf)")(
      "merge_lora", po::value(&opt.merge_lora),
      "Phi-4-multimodal: merge this LoRA adapter (vision or speech) into the base weights "
      "instead of dropping the adapters")("dtype", po::value(&opt.out_dtype)->default_value("keep"),
                                          "tensor dtype of the output: keep, F32, BF16 or F16")(
      "max_shard_size", po::value(&max_shard),
      "HDF5 -> HF: split model.safetensors into shards above this size (e.g. 5GB, 500MiB; "
      "default 5GiB)");
  po::options_description hidden;
  hidden.add_options()("input", po::value(&in))("output", po::value(&out));
  po::positional_options_description pos;
  pos.add("input", 1).add("output", 1);
  const char* usage =
      "usage: autotp-convert HF_DIR OUT.h5 [options]   (Hugging Face checkpoint -> model file)\n"
      "       autotp-convert IN.h5 HF_DIR [options]    (model file -> Hugging Face checkpoint)\n";
  return autotp::tool_main("autotp-convert", [&] {
    po::variables_map vm;
    if (!autotp::parse_command_line(argc, argv, named, vm, usage, &hidden, &pos)) return 0;
    if (in.empty() || out.empty()) {
      std::cerr << "autotp-convert: error: INPUT and OUTPUT are required\n"
                << usage << named << "\n";
      return 2;
    }
    if (!max_shard.empty()) opt.max_shard_bytes = autotp::parse_byte_size(max_shard);
    if (to.empty()) to = std::filesystem::is_directory(in) ? "h5" : "hf";
    std::vector<std::string> notes;
    if (to == "h5")
      notes = autotp::convert_hf_to_h5(in, out, opt);
    else if (to == "hf")
      notes = autotp::convert_h5_to_hf(in, out, opt);
    else
      autotp::fail("--to '", to, "': expected h5 or hf");
    for (auto& n : notes) std::cout << "autotp-convert: " << n << "\n";
    return 0;
  });
}
