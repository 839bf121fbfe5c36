#include "dist/mpi_main.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

namespace autotp {

std::string on_rank0(MPI_Comm comm, const std::function<std::string()>& f) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  int ok = 1;
  std::string text;
  if (rank == 0) {
    try {
      text = f();
    } catch (const Error& e) {
      ok = 0;
      text = e.what();
    }
  }
  long long n = (long long)text.size();
  MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
  MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, comm);
  text.resize(size_t(n));
  MPI_Bcast(text.data(), int(n), MPI_CHAR, 0, comm);
  if (!ok) throw CollectiveError(text);
  return text;
}

int mpi_main(const char* program, int argc, char** argv, const std::function<int()>& body) {
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int code = 0;
  try {
    code = body();
  } catch (const CollectiveError& e) {
    if (rank == 0) std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    MPI_Finalize();
    return 1;
  } catch (const std::exception& e) {
    if (size > 1)
      std::fprintf(stderr, "%s: error on rank %d: %s\n", program, rank, e.what());
    else
      std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    std::fflush(stderr);
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
    return 1;
  }
  MPI_Finalize();
  return code;
}

}  // namespace autotp
