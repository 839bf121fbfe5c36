#pragma once
// Communicators for the CUDA backend's device buffers, over one MPI group (not owned):
//
//   make_nccl_comm:       NCCL on a stream of its own, ordered after the compute stream with
//                         events and the compute stream after it, so the host never waits.
//                         Needs one GPU per rank (NCCL refuses two ranks on one GPU).
//   make_staged_mpi_comm: plain MPI through pinned host buffers: waits for the compute stream,
//                         copies device -> host, runs the MPI collective, copies back. Works
//                         with any number of ranks per GPU (and any MPI).
//
// Both also take host pointers (the optimizer's and the trainer's scalars): those go to
// make_mpi_comm on the same group. Both arguments of all_gather / reduce_scatter must be on the
// same side.
#include <cuda_runtime.h>
#include <mpi.h>

#include <memory>

#include "dist/comm.hpp"

namespace autotp {

// Collective over `comm`: rank 0 makes the NCCL id and broadcasts it. The current CUDA device
// (cudaSetDevice) is the one NCCL uses.
std::unique_ptr<Comm> make_nccl_comm(MPI_Comm comm, cudaStream_t compute);

// stage_floats bounds the pinned buffer (and so each MPI message, which keeps MPI's int counts
// in range); big buffers travel in chunks.
std::unique_ptr<Comm> make_staged_mpi_comm(MPI_Comm comm, cudaStream_t compute,
                                           size_t stage_floats = size_t(1) << 25);

}  // namespace autotp
