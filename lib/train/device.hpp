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
  double peak_tflops = 0;          // a GPU's nominal dense peak; 0 on the CPU (none is known)
  double peak_memory_gib() const;  // the backend's peak allocated memory (Backend::peak_bytes)
  // What the GPU has in use now, every process on it counted (ranks sharing it, their CUDA
  // contexts, libraries' workspaces): the card's own count beside the backend's; -1 on the CPU.
  double device_used_gib() const;
  // What one rank may allocate on its device, for the check before the model is built
  // (train/memory_plan.hpp): CUDA: the GPU's free memory once the backend is up; CPU: the
  // node's physical memory over the ranks on the node. memory_what says which, for messages.
  size_t memory_bytes = 0;
  std::string memory_what;
};

// Collective over topo.world. device: auto | cpu | cuda; comm: auto | mpi | nccl.
Device make_device(const std::string& device, const std::string& comm, const Topology& topo);

// n of the n^3 matmul that measures a backend's GEMM rate unless told otherwise.
int64_t default_gemm_size(const Backend& be);
// TFLOP/s of the backend's matmul C[n,n] = A[n,n] @ B[n,n]^T on fp32 buffers of random values,
// everything the backend does per call included (the CUDA backend converts both operands to
// bf16 each call, so this is a little under cuBLAS's own rate).
double measure_gemm_tflops(Backend& be, int64_t n);
// GB/s of a device-to-device copy of `bytes`, counting the read and the write.
double measure_bandwidth_gbs(Backend& be, size_t bytes);

// The MFU denominator, TFLOP/s per rank, and what it is: `flag` (--peak_tflops) when > 0, else
// a GPU's nominal dense peak, else (the CPU, whose nominal rate says little about what OpenBLAS
// reaches on it) the backend matmul's rate measured on every rank at once (the ranks share the
// cores as in training), averaged over `world`. gemm_n: the matmul's n (0 = the default);
// measured: this rank's rate at gemm_n when the caller has it already (autotp-bench's floor),
// else 0. Collective over world.
struct PeakRate {
  double tflops = 0;
  std::string source;  // e.g. "the CPU backend's matmul, 512^3 measured on every rank at once"
};
PeakRate mfu_peak(Device& dev, double flag, MPI_Comm world, int64_t gemm_n = 0,
                  double measured = 0);

}  // namespace autotp
