#pragma once
// The one way an MPI program of autotp starts and ends. Any Error on any rank ends the whole
// job through MPI_Abort, so a failing rank never leaves the others hanging in a collective.
// A CollectiveError is one that every rank raised together (a bad world size, a bad config
// read by all): rank 0 prints it once and every rank exits non-zero without an abort.
#include <mpi.h>

#include <functional>
#include <string>

#include "core/error.hpp"

namespace autotp {

struct CollectiveError : Error {
  explicit CollectiveError(const std::string& msg) : Error(msg) {}
};

// Runs f() where every rank reads the same inputs and fails on them alike (configs, flags): an
// Error becomes a CollectiveError, so rank 0 says it once.
template <typename F>
auto same_on_every_rank(F&& f) {
  try {
    return f();
  } catch (const CollectiveError&) {
    throw;
  } catch (const Error& e) {
    throw CollectiveError(e.what());
  }
}

// Work done once for every rank (a token cache, a converted model file): f() runs on rank 0 of
// comm while the others wait, and its result comes back on every rank. An Error on rank 0 is
// raised on every rank as a CollectiveError, so the job ends with rank 0's message, said once.
std::string on_rank0(MPI_Comm comm, const std::function<std::string()>& f);

// Initialises MPI, runs body(), finalises. Returns the process exit code.
int mpi_main(const char* program, int argc, char** argv, const std::function<int()>& body);

}  // namespace autotp
