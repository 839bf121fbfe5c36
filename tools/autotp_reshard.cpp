// autotp-reshard: a checkpoint rewritten for another TP x DP topology.
//   autotp-reshard SRC DST --tp_size T --dp_size D
// SRC: a checkpoint (SAVE_DIR/<step>) or a save directory (its latest). DST: a save directory;
// the result is DST/<step> and DST/latest, so `autotp-train --save_dir DST --resume` goes on.
#include <iostream>

#include "checkpoint/reshard.hpp"
#include "core/cli.hpp"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string src, dst;
  int tp = 0, dp = 0;
  po::options_description named("Options");
  named.add_options()("help,h", "show this help")("tp_size", po::value(&tp)->required(),
                                                  "tensor-parallel size of the output")(
      "dp_size", po::value(&dp)->required(), "data-parallel size of the output");
  po::options_description hidden;
  hidden.add_options()("src", po::value(&src)->required())("dst", po::value(&dst)->required());
  po::positional_options_description pos;
  pos.add("src", 1).add("dst", 1);
  const char* usage = "usage: autotp-reshard SRC DST --tp_size T --dp_size D\n";
  return autotp::tool_main("autotp-reshard", [&] {
    po::variables_map vm;
    if (!autotp::parse_command_line(argc, argv, named, vm, usage, &hidden, &pos)) return 0;
    std::string dir = autotp::reshard_checkpoint(src, dst, tp, dp);
    std::cout << "autotp-reshard: wrote " << dir << " (TP " << tp << " x DP " << dp << ")\n";
    return 0;
  });
}
