#include "train/device.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "dist/mpi_main.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "train/train_args.hpp"
#ifdef AUTOTP_WITH_CUDA
#include "dist/cuda/device_comm.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#endif

namespace autotp {

namespace {

Device cpu_device(const Topology& topo) {
  // Ranks sharing a node split its cores: BLAS threads beyond that only contend.
  CpuBackend::set_threads(std::max(1, int(std::thread::hardware_concurrency()) / topo.local_size));
  Device d;
  d.backend = std::make_unique<CpuBackend>();
  d.tp = make_mpi_comm(topo.tp_comm);
  d.dp = make_mpi_comm(topo.dp_comm);
  d.description = "cpu, MPI";
  d.memory_bytes = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGESIZE)) /
                   size_t(std::max(1, topo.local_size));
  d.memory_what = "this node's physical memory over its " + std::to_string(topo.local_size) +
                  " rank" + (topo.local_size == 1 ? "" : "s");
  return d;
}

#ifdef AUTOTP_WITH_CUDA
// true when `ok` holds on every rank of the job.
bool on_every_rank(bool ok, MPI_Comm world) {
  int mine = ok ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, world);
  return all == 1;
}

// Nominal dense bf16 peaks (TFLOP/s, without sparsity) by product name; MFU divides by it.
double gpu_peak_tflops(const std::string& name) {
  struct Peak {
    const char* key;
    double tflops;
  };
  static const Peak peaks[] = {{"H100", 989},  {"H200", 989},  {"GH200", 989}, {"H800", 989},
                               {"B200", 2250}, {"B100", 1750}, {"A100", 312},  {"A800", 312},
                               {"L40S", 362},  {"L4", 121}};
  for (auto& p : peaks)
    if (name.find(p.key) != std::string::npos) return p.tflops;
  return 100;  // unknown GPU: a placeholder; --peak_tflops gives the real one
}

Device cuda_device(const std::string& comm, const Topology& topo, int count) {
  // NCCL refuses two ranks of one communicator on one GPU, so it needs a GPU per rank on
  // every node; the staged MPI communicator works either way.
  const bool own_gpu = on_every_rank(topo.local_size <= count, topo.world);
  if (comm == "nccl" && !own_gpu)
    throw CollectiveError(
        "--comm nccl needs one GPU per rank, but some node runs more ranks than it has GPUs "
        "(NCCL refuses two ranks on one GPU): use --comm mpi, or start one rank per GPU");
  const bool nccl = comm == "nccl" || (comm == "auto" && own_gpu);
  const int gpu = topo.local_rank % count;
  auto be = make_cuda_backend(gpu, TrainArgs::share_dir() + "/gemm_tuning");
  Device d;
  d.tp = nccl ? make_nccl_comm(topo.tp_comm, be->stream())
              : make_staged_mpi_comm(topo.tp_comm, be->stream());
  d.dp = nccl ? make_nccl_comm(topo.dp_comm, be->stream())
              : make_staged_mpi_comm(topo.dp_comm, be->stream());
  d.description = "cuda:" + std::to_string(gpu) + " (" + be->device_name() + "), " +
                  (nccl ? "NCCL" : "MPI staged through host memory");
  d.peak_tflops = gpu_peak_tflops(be->device_name());
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
  d.memory_bytes = free_bytes;
  d.memory_what = "GPU " + std::to_string(gpu) + "'s free memory (of " +
                  std::to_string(total_bytes >> 20) + " MiB)";
  d.backend = std::move(be);
  return d;
}
#endif

}  // namespace

double Device::peak_memory_gib() const {
  return double(backend->peak_bytes()) / (1024.0 * 1024.0 * 1024.0);
}

double Device::device_used_gib() const {
#ifdef AUTOTP_WITH_CUDA
  size_t free_bytes = 0, total_bytes = 0;
  if (backend->name() != "cpu" && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
    return double(total_bytes - free_bytes) / (1024.0 * 1024.0 * 1024.0);
  (void)cudaGetLastError();
#endif
  return -1.0;
}

Device make_device(const std::string& device, const std::string& comm, const Topology& topo) {
  // The flags are the same on every rank, and so is the verdict: rank 0 says it once.
  auto flag_check = [](bool ok, const std::string& msg) {
    if (!ok) throw CollectiveError(msg);
  };
  flag_check(device == "auto" || device == "cpu" || device == "cuda",
             "--device '" + device + "' is not one of auto, cpu, cuda");
  flag_check(comm == "auto" || comm == "mpi" || comm == "nccl",
             "--comm '" + comm + "' is not one of auto, mpi, nccl");
#ifdef AUTOTP_WITH_CUDA
  if (device != "cpu") {
    const int count = cuda_device_count();
    // Every rank takes the same side, so that the CPU and CUDA ranks never mix in one job.
    const bool gpus = on_every_rank(count > 0, topo.world);
    flag_check(device != "cuda" || gpus,
               "--device cuda: some rank sees no GPU (check CUDA_VISIBLE_DEVICES and the "
               "driver); use --device cpu");
    if (gpus) return cuda_device(comm, topo, count);
  }
  flag_check(comm != "nccl", "--comm nccl needs the CUDA device; use --comm mpi");
#else
  flag_check(device != "cuda", "--device cuda: this build has no CUDA backend; use --device cpu");
  flag_check(comm != "nccl", "--comm nccl needs the CUDA backend; use --comm mpi");
#endif
  return cpu_device(topo);
}

namespace {

// Repeats f until about `budget` seconds have passed (at least 3 times, after one untimed call)
// and returns the seconds per call.
template <typename F>
double time_per_call(Backend& be, F&& f, double budget = 0.3) {
  using Clock = std::chrono::steady_clock;
  f();
  be.synchronize();
  auto t0 = Clock::now();
  f();
  be.synchronize();
  double once = std::chrono::duration<double>(Clock::now() - t0).count();
  int reps = int(std::clamp(budget / std::max(once, 1e-6), 3.0, 500.0));
  t0 = Clock::now();
  for (int i = 0; i < reps; ++i) f();
  be.synchronize();
  return std::chrono::duration<double>(Clock::now() - t0).count() / reps;
}

}  // namespace

int64_t default_gemm_size(const Backend& be) {
  return be.name() == "cpu" ? 512 : 4096;
}

double measure_gemm_tflops(Backend& be, int64_t n) {
  std::vector<float> host(size_t(n * n));
  std::mt19937 gen(7);  // random values: zeros would flatter a GPU's clocks
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& x : host) x = nd(gen);
  float* A = be.alloc(host.size());
  float* B = be.alloc(host.size());
  float* C = be.alloc(host.size());
  be.from_host(host.data(), A, host.size() * sizeof(float));
  be.from_host(host.data(), B, host.size() * sizeof(float));
  double s = time_per_call(be, [&] { be.matmul(n, n, n, A, false, B, true, C, false); });
  for (float* p : {A, B, C}) be.free_bytes(p);
  return 2.0 * double(n) * double(n) * double(n) / s / 1e12;
}

double measure_bandwidth_gbs(Backend& be, size_t bytes) {
  void* a = be.alloc_bytes(bytes);
  void* b = be.alloc_bytes(bytes);
  double s = time_per_call(be, [&] { be.copy(a, b, bytes); });
  be.free_bytes(a);
  be.free_bytes(b);
  return 2.0 * double(bytes) / s / 1e9;
}

PeakRate mfu_peak(Device& dev, double flag, MPI_Comm world, int64_t gemm_n, double measured) {
  if (flag > 0) return {flag, "--peak_tflops"};
  if (dev.peak_tflops > 0) return {dev.peak_tflops, "the GPU's nominal dense bf16 peak"};
  const int64_t n = gemm_n > 0 ? gemm_n : default_gemm_size(*dev.backend);
  if (measured <= 0) {
    MPI_Barrier(world);  // every rank measures while the others do, as they will train
    measured = measure_gemm_tflops(*dev.backend, n);
  }
  int size = 1;
  MPI_Comm_size(world, &size);
  MPI_Allreduce(MPI_IN_PLACE, &measured, 1, MPI_DOUBLE, MPI_SUM, world);
  return {measured / size, "the " + dev.backend->name() + " backend's matmul (" +
                               std::to_string(n) + "^3, measured on every rank at once)"};
}

}  // namespace autotp
