#include "dist/mpi_main.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

namespace autotp {

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
