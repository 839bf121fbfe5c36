#pragma once
// Where a rank computes and how it communicates: the Backend and the TP and DP Comms that can
// address its memory, chosen from --device and --comm.
//
//   --device auto: CUDA when the build has it and a GPU is visible, else the CPU.
//   --comm auto:   CPU -> MPI on host memory. CUDA -> NCCL when every rank of the job has a
//                  GPU of its own; MPI staged through host memory when ranks share a GPU
//                  (NCCL refuses two ranks of one communicator on one GPU).
#include <memory>
#include <string>

#include "dist/comm.hpp"
#include "dist/topology.hpp"
#include "kernels/backend.hpp"

namespace autotp {

struct Device {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Comm> tp, dp;
  std::string description;         // e.g. "cuda:0 (NVIDIA H100), NCCL" or "cpu, MPI"
  double peak_tflops = 0;          // the nominal dense peak of one rank's device, for MFU
  double peak_memory_gib() const;  // the backend's peak allocated memory (Backend::peak_bytes)
  // What one rank may allocate on its device, for the check before the model is built
  // (train/memory_plan.hpp): CUDA: the GPU's free memory once the backend is up; CPU: the
  // node's physical memory over the ranks on the node. memory_what says which, for messages.
  size_t memory_bytes = 0;
  std::string memory_what;
};

// Collective over topo.world. device: auto | cpu | cuda; comm: auto | mpi | nccl.
Device make_device(const std::string& device, const std::string& comm, const Topology& topo);

}  // namespace autotp
