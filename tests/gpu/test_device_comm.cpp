// The device communicators under mpirun (any number of ranks): every collective on device
// buffers against its exact expected result (integer-valued floats, so sums are exact), on
// the world and on strided subgroups (DP-like), with a busy compute stream (NCCL must wait
// for it), host pointers passed through, and chunked staging. NCCL runs only where every
// rank has a GPU of its own.
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "dist/cuda/device_comm.hpp"
#include "gpu_test_util.hpp"
#include "test_util.hpp"

namespace autotp {

namespace {

// EXPECT (not ASSERT: a rank that returned early would leave the others in a collective) that
// got[i] == want(i) for every i; reports the count and the first mismatch.
template <typename Want>
void expect_values(const std::vector<float>& got, Want want, const char* what) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want(i) && bad++ == 0) first = i;
  EXPECT_EQ(bad, 0u) << what << ": first mismatch at " << first << ": " << got[first] << " vs "
                     << want(first);
}

// A compute stream and device buffers on this rank's GPU.
class Gpu {
 public:
  Gpu() {
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
    cudaSetDevice(local_rank_ % test::visible_gpus());
    cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    cudaMalloc(&busy_, kBusy);
  }
  ~Gpu() {
    for (float* p : bufs_) cudaFree(p);
    cudaFree(busy_);
    cudaStreamDestroy(stream);
  }
  bool own_gpu() const {  // on every rank: the NCCL precondition
    int mine = local_size_ <= test::visible_gpus(), all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all == 1;
  }
  float* alloc(size_t n) {
    float* p = nullptr;
    cudaMalloc(&p, n * sizeof(float));
    bufs_.push_back(p);
    return p;
  }
  // Writes v into dev on the compute stream behind a queue of memsets, so that a communicator
  // that does not wait for the stream would read stale data.
  void upload(const std::vector<float>& v, float* dev) {
    float* src = alloc(v.size());
    cudaMemcpy(src, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemsetAsync(dev, 0, v.size() * sizeof(float), stream);
    for (int i = 0; i < 8; ++i) cudaMemsetAsync(busy_, i, kBusy, stream);
    cudaMemcpyAsync(dev, src, v.size() * sizeof(float), cudaMemcpyDeviceToDevice, stream);
  }
  // Reads on the compute stream: sees the collective only if it was ordered before.
  std::vector<float> download(const float* dev, size_t n) {
    std::vector<float> h(n);
    cudaMemcpyAsync(h.data(), dev, n * sizeof(float), cudaMemcpyDeviceToHost, stream);
    cudaStreamSynchronize(stream);
    return h;
  }
  cudaStream_t stream = nullptr;

 private:
  static constexpr size_t kBusy = size_t(64) << 20;
  int local_rank_ = 0, local_size_ = 1;
  void* busy_ = nullptr;
  std::vector<float*> bufs_;
};

using MakeComm = std::unique_ptr<Comm> (*)(MPI_Comm, cudaStream_t);

// Every collective over `group`, checked exactly.
void check_collectives(Gpu& gpu, Comm& c, const std::string& what) {
  const int r = c.rank(), n = c.size();
  const size_t L = 1003;  // odd, and above a small stage: several chunks
  SCOPED_TRACE(what + " rank " + std::to_string(r) + " of " + std::to_string(n));

  std::vector<float> x(L);
  for (size_t i = 0; i < L; ++i) x[i] = float(r * 1000 + int(i));
  float* d = gpu.alloc(n * L);
  gpu.upload(x, d);
  c.all_reduce_sum(d, L);
  expect_values(
      gpu.download(d, L), [&](size_t i) { return float(1000 * n * (n - 1) / 2 + n * int(i)); },
      "all_reduce_sum");

  for (size_t i = 0; i < L; ++i) x[i] = int(i) % n == r ? float(i) + 0.5f : -float(i);
  gpu.upload(x, d);
  c.all_reduce_max(d, L);
  expect_values(
      gpu.download(d, L), [](size_t i) { return float(i) + 0.5f; }, "all_reduce_max");

  for (size_t j = 0; j < L; ++j) x[j] = float(r * 100000 + int(j));
  float* all = gpu.alloc(n * L);
  gpu.upload(x, d);
  c.all_gather(d, all, L);
  expect_values(
      gpu.download(all, n * L), [&](size_t i) { return float(int(i / L) * 100000 + int(i % L)); },
      "all_gather");

  std::vector<float> blocks(n * L);
  for (int q = 0; q < n; ++q)
    for (size_t j = 0; j < L; ++j) blocks[q * L + j] = float(r + 10 * q) + 0.5f * float(j);
  gpu.upload(blocks, all);
  c.reduce_scatter_sum(all, d, L);
  expect_values(
      gpu.download(d, L),
      [&](size_t j) { return float(n * (n - 1) / 2 + n * 10 * r) + 0.5f * float(n * int(j)); },
      "reduce_scatter_sum");

  // Nonblocking: reduces to every root (last first) and an all-reduce in flight together,
  // complete after wait_all, read on the compute stream.
  std::vector<float*> parts(size_t(n) + 1);
  for (int q = 0; q <= n; ++q) {
    for (size_t j = 0; j < L; ++j) x[j] = float(r + 1) * float(q + 1) + float(j);
    gpu.upload(x, parts[size_t(q)] = gpu.alloc(L));
  }
  for (int q = n - 1; q >= 0; --q) c.reduce_sum_async(parts[size_t(q)], L, q);
  c.all_reduce_sum_async(parts[size_t(n)], L);
  c.wait_all();
  for (int q = 0; q <= n; ++q) {
    if (q < n && q != r) continue;  // only the root's buffer is defined
    expect_values(
        gpu.download(parts[size_t(q)], L),
        [&](size_t j) { return float(n * (n + 1) / 2) * float(q + 1) + float(n) * float(j); },
        q < n ? "reduce_sum_async" : "all_reduce_sum_async");
  }

  // Marks: wait_until(mark) completes the ops before the mark (the optimizer's gradient buckets
  // reuse a buffer while later sums still run); waiting twice, or for an old mark, is a no-op.
  for (int q = 0; q < n; ++q) {
    for (size_t j = 0; j < L; ++j) x[j] = float(r + 1) * float(q + 1) + float(j);
    gpu.upload(x, parts[size_t(q)]);
  }
  std::vector<size_t> marks(static_cast<size_t>(n));
  for (int q = 0; q < n; ++q) {
    c.reduce_sum_async(parts[size_t(q)], L, q);
    marks[size_t(q)] = c.mark();
  }
  for (int q = 0; q < n; ++q) {
    c.wait_until(marks[size_t(q)]);
    c.wait_until(marks[0]);
    if (q != r) continue;
    expect_values(
        gpu.download(parts[size_t(q)], L),
        [&](size_t j) { return float(n * (n + 1) / 2) * float(q + 1) + float(n) * float(j); },
        "reduce_sum_async + wait_until");
  }
  EXPECT_EQ(c.mark(), marks.back()) << "no op since the last mark";
  c.wait_all();

  const int root = n - 1;
  for (size_t j = 0; j < L; ++j) x[j] = r == root ? float(j) : -1.0f;
  gpu.upload(x, d);
  c.broadcast(d, L, root);
  expect_values(
      gpu.download(d, L), [](size_t j) { return float(j); }, "broadcast");

  // Host memory goes to plain MPI (the trainer's loss, the optimizer's norms).
  std::vector<float> h = {float(r), 1.0f};
  c.all_reduce_sum(h.data(), 2);
  EXPECT_EQ(h[0], float(n * (n - 1) / 2));
  EXPECT_EQ(h[1], float(n));
  std::vector<float> hall(2 * n);
  c.all_gather(h.data(), hall.data(), 2);
  EXPECT_EQ(hall[2 * (n - 1) + 1], float(n));

  // One side host, the other device: refused with a message, before any rank communicates.
  EXPECT_TRUE(has(error_of([&] { c.all_gather(h.data(), all, 1); }), "same side"));
  c.barrier();
}

void check_comm(MakeComm make, const std::string& name) {
  Gpu gpu;
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  {
    auto c = make(MPI_COMM_WORLD, gpu.stream);
    check_collectives(gpu, *c, name + " world");
  }
  MPI_Comm strided;  // ranks {0, 2, ..} and {1, 3, ..}, like the DP groups of TP 2
  MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &strided);
  {
    auto c = make(strided, gpu.stream);
    check_collectives(gpu, *c, name + " strided");
  }
  MPI_Comm_free(&strided);
}

std::unique_ptr<Comm> tiny_stage(MPI_Comm c, cudaStream_t s) {
  return make_staged_mpi_comm(c, s, 7);  // chunks of 7 / (n + 1) floats: many chunks
}
std::unique_ptr<Comm> default_stage(MPI_Comm c, cudaStream_t s) {
  return make_staged_mpi_comm(c, s);
}

TEST(DeviceComm, StagedMpi) {
  AUTOTP_NEED_GPU();
  check_comm(default_stage, "staged MPI");
}

TEST(DeviceComm, StagedMpiInChunks) {
  AUTOTP_NEED_GPU();
  check_comm(tiny_stage, "staged MPI, 7-float stage");
}

TEST(DeviceComm, Nccl) {
  AUTOTP_NEED_GPU();
  if (!Gpu().own_gpu()) GTEST_SKIP() << "ranks share a GPU: NCCL refuses that";
  check_comm(make_nccl_comm, "NCCL");
}

}  // namespace
}  // namespace autotp
