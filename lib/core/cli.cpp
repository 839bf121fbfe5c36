#include "core/cli.hpp"

#include <iostream>

#include "core/error.hpp"

namespace autotp {

namespace po = boost::program_options;

bool parse_command_line(int argc, char** argv, const po::options_description& visible,
                        po::variables_map& vm, const std::string& usage,
                        const po::options_description* hidden,
                        const po::positional_options_description* pos) {
  po::options_description all;
  all.add(visible);
  if (hidden) all.add(*hidden);
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(all);
    if (pos) parser.positional(*pos);
    po::store(parser.run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    fail(e.what(), " (see --help)");
  }
  if (vm.count("help")) {
    std::cout << usage << visible << "\n";
    return false;
  }
  return true;
}

int tool_main(const char* tool, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {  // autotp::Error, and filesystem or allocation failures
    std::cerr << tool << ": error: " << e.what() << "\n";
  }
  return 1;
}

void add_activation_checkpointing_option(boost::program_options::options_description& d,
                                         int& flag) {
  d.add_options()("activation_checkpointing",
                  boost::program_options::value<bool>()->implicit_value(true)->notifier(
                      [&flag](bool on) { flag = on ? 1 : 0; }),
                  "true or false: recompute each layer's forward in the backward instead of "
                  "keeping its activations (default: on when the ds_config has an "
                  "activation_checkpointing block)");
}

}  // namespace autotp
