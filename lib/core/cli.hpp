#pragma once
// What every autotp command line shares: parsing with one error style, --help, and a main that
// turns any failure into "<tool>: error: <message>" and exit code 1.
#include <boost/program_options.hpp>
#include <functional>
#include <string>

namespace autotp {

// Parses argv into vm. Bad flags throw Error ("... (see --help)"). With --help, prints usage
// and the visible options and returns false. `hidden` and `pos` add positional arguments.
bool parse_command_line(
    int argc, char** argv, const boost::program_options::options_description& visible,
    boost::program_options::variables_map& vm, const std::string& usage,
    const boost::program_options::options_description* hidden = nullptr,
    const boost::program_options::positional_options_description* pos = nullptr);

// --activation_checkpointing [true|false], shared by autotp-train, autotp-bench and autotp-plan:
// sets flag to 1 or 0 when given (bare: true) and leaves it alone (-1) otherwise, when the
// ds_config's activation_checkpointing block decides (ActivationCheckpointingConfig::on).
void add_activation_checkpointing_option(boost::program_options::options_description& d, int& flag);

// Runs a single-process tool's body and returns its exit code; any exception becomes one line
// on stderr and exit code 1. (MPI programs use dist/mpi_main.hpp instead.)
int tool_main(const char* tool, const std::function<int()>& body);

}  // namespace autotp
