#include "train/device.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <thread>

#include "core/error.hpp"
#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

double Device::peak_memory_gib() const {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is KiB on Linux
}

Device make_device(const std::string& device, const std::string& comm, const Topology& topo) {
  check(device == "auto" || device == "cpu" || device == "cuda", "--device '", device,
        "' is not one of auto, cpu, cuda");
  check(comm == "auto" || comm == "mpi" || comm == "nccl", "--comm '", comm,
        "' is not one of auto, mpi, nccl");
  check(device != "cuda", "--device cuda: this build has no CUDA backend; use --device cpu");
  check(comm != "nccl", "--comm nccl needs the CUDA backend; use --comm mpi");
  // Ranks sharing a node split its cores: BLAS threads beyond that only contend.
  CpuBackend::set_threads(std::max(1, int(std::thread::hardware_concurrency()) / topo.local_size));
  Device d;
  d.backend = std::make_unique<CpuBackend>();
  d.tp = make_mpi_comm(topo.tp_comm);
  d.dp = make_mpi_comm(topo.dp_comm);
  d.description = "cpu, MPI";
  d.peak_tflops = 0.05;  // a CPU core's fp32 FMA rate, nominal
  return d;
}

}  // namespace autotp
