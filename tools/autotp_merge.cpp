// autotp-merge: the full model of a checkpoint as an autotp model file.
//   autotp-merge SRC OUT.h5      (then: autotp-convert OUT.h5 HF_DIR for safetensors)
// SRC: a checkpoint (SAVE_DIR/<step>) or a save directory (its latest).
#include <iostream>

#include "checkpoint/reshard.hpp"
#include "core/cli.hpp"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string src, out;
  po::options_description named("Options");
  named.add_options()("help,h", "show this help");
  po::options_description hidden;
  hidden.add_options()("src", po::value(&src)->required())("out", po::value(&out)->required());
  po::positional_options_description pos;
  pos.add("src", 1).add("out", 1);
  const char* usage = "usage: autotp-merge SRC OUT.h5\n";
  return autotp::tool_main("autotp-merge", [&] {
    po::variables_map vm;
    if (!autotp::parse_command_line(argc, argv, named, vm, usage, &hidden, &pos)) return 0;
    autotp::merge_checkpoint(src, out);
    std::cout << "autotp-merge: wrote " << out << "\n";
    return 0;
  });
}
