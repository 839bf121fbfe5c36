// MPI on device buffers through pinned host memory, for ranks that share a GPU. Per chunk:
//   wait for the compute stream; device -> pinned; MPI on pinned; pinned -> device (async).
// The copy back is ordered on the compute stream before anything issued later, and the next
// chunk's host access to the pinned buffer comes after a wait on that stream, so one buffer
// serves every chunk.
#include <algorithm>
#include <climits>

#include "dist/cuda/device_comm.hpp"
#include "dist/cuda/device_comm_base.hpp"

namespace autotp {

namespace {

class StagedMpiComm final : public DeviceComm {
 public:
  StagedMpiComm(MPI_Comm c, cudaStream_t compute, size_t stage_floats)
      : DeviceComm(c), c_(c), compute_(compute), cap_(std::max<size_t>(stage_floats, size() + 1)) {
    check(cap_ <= size_t(INT_MAX), "staged MPI communicator: a stage of ", cap_,
          " floats exceeds MPI's int count");
  }
  ~StagedMpiComm() override {
    if (pin_) cudaFreeHost(pin_);
  }

 protected:
  void dev_all_reduce(float* buf, size_t n, ReduceOp op) override {
    in_place(buf, n, true, true, [&](float* h, int k) {
      MPI_Allreduce(MPI_IN_PLACE, h, k, MPI_FLOAT, op == ReduceOp::Sum ? MPI_SUM : MPI_MAX, c_);
    });
  }

  // Chunk [c, c + k) of every rank's block: recv rows are count apart on the device, k apart
  // in the stage (a 2D copy puts them in place).
  void dev_all_gather(const float* send, float* recv, size_t count) override {
    if (size() == 1) return copy_alone(send, recv, count);
    const size_t n = size_t(size());
    const size_t k_max = cap_ / (n + 1);
    float* h = stage(std::min(count, k_max) * (n + 1));
    for (size_t c = 0; c < count; c += k_max) {
      const size_t k = std::min(k_max, count - c);
      float* all = h + k;
      to_host(send + c, h, k);
      MPI_Allgather(h, int(k), MPI_FLOAT, all, int(k), MPI_FLOAT, c_);
      copy_rows(all, k, recv + c, count, k, n, cudaMemcpyHostToDevice);
    }
  }

  void dev_reduce_scatter_sum(const float* send, float* recv, size_t count) override {
    if (size() == 1) return copy_alone(send, recv, count);
    const size_t n = size_t(size());
    const size_t k_max = cap_ / (n + 1);
    float* h = stage(std::min(count, k_max) * (n + 1));
    for (size_t c = 0; c < count; c += k_max) {
      const size_t k = std::min(k_max, count - c);
      float* mine = h + n * k;
      copy_rows(send + c, count, h, k, k, n, cudaMemcpyDeviceToHost);
      cuda_check(cudaStreamSynchronize(compute_), "cudaStreamSynchronize");
      MPI_Reduce_scatter_block(h, mine, int(k), MPI_FLOAT, MPI_SUM, c_);
      to_device(mine, recv + c, k);
    }
  }

  void dev_broadcast(float* buf, size_t n, int root) override {
    const bool me = rank() == root;
    in_place(buf, n, me, !me, [&](float* h, int k) { MPI_Bcast(h, k, MPI_FLOAT, root, c_); });
  }

  // Synchronous: complete (for the compute stream) on return, like the blocking ops.
  void dev_reduce_sum_async(float* buf, size_t n, int root) override {
    const bool me = rank() == root;
    in_place(buf, n, true, me, [&](float* h, int k) {
      MPI_Reduce(me ? MPI_IN_PLACE : h, h, k, MPI_FLOAT, MPI_SUM, root, c_);
    });
  }

 private:
  // An in-place collective on buf[n], chunk by chunk through the stage: copy the chunk to the
  // stage (if `send`), mpi(stage, k), copy it back (if `recv`).
  template <typename Mpi>
  void in_place(float* buf, size_t n, bool send, bool recv, Mpi&& mpi) {
    if (size() == 1) return;
    const size_t k_max = cap_;
    float* h = stage(std::min(n, k_max));
    for (size_t c = 0; c < n; c += k_max) {
      const size_t k = std::min(k_max, n - c);
      if (send)
        to_host(buf + c, h, k);
      else  // the previous chunk's copy out of the stage must finish before MPI overwrites it
        cuda_check(cudaStreamSynchronize(compute_), "cudaStreamSynchronize");
      mpi(h, int(k));
      if (recv) to_device(h, buf + c, k);
    }
  }
  // A group of one: the result is the input, no host round trip.
  void copy_alone(const float* send, float* recv, size_t count) {
    if (send != recv)
      cuda_check(
          cudaMemcpyAsync(recv, send, count * sizeof(float), cudaMemcpyDeviceToDevice, compute_),
          "cudaMemcpyAsync (device to device)");
  }
  // The pinned buffer, grown to at least n floats (never beyond cap_ + size()).
  float* stage(size_t n) {
    if (n > pin_n_) {
      // The old buffer may still feed a copy on the compute stream.
      cuda_check(cudaStreamSynchronize(compute_), "cudaStreamSynchronize");
      if (pin_) cudaFreeHost(pin_);
      pin_ = nullptr;
      cuda_check(cudaMallocHost(reinterpret_cast<void**>(&pin_), n * sizeof(float)),
                 "cudaMallocHost (staging buffer)");
      pin_n_ = n;
    }
    return pin_;
  }
  // Device -> stage, complete on return (the wait also covers every op issued before).
  void to_host(const float* dev, float* h, size_t k) {
    cuda_check(cudaMemcpyAsync(h, dev, k * sizeof(float), cudaMemcpyDeviceToHost, compute_),
               "cudaMemcpyAsync (device to host)");
    cuda_check(cudaStreamSynchronize(compute_), "cudaStreamSynchronize");
  }
  void to_device(const float* h, float* dev, size_t k) {
    cuda_check(cudaMemcpyAsync(dev, h, k * sizeof(float), cudaMemcpyHostToDevice, compute_),
               "cudaMemcpyAsync (host to device)");
  }
  // rows x width floats from src (row pitch src_ld floats) to dst (pitch dst_ld), async.
  void copy_rows(const float* src, size_t src_ld, float* dst, size_t dst_ld, size_t width,
                 size_t rows, cudaMemcpyKind kind) {
    cuda_check(cudaMemcpy2DAsync(dst, dst_ld * sizeof(float), src, src_ld * sizeof(float),
                                 width * sizeof(float), rows, kind, compute_),
               "cudaMemcpy2DAsync");
  }

  MPI_Comm c_;
  cudaStream_t compute_;
  size_t cap_;
  float* pin_ = nullptr;
  size_t pin_n_ = 0;
};

}  // namespace

std::unique_ptr<Comm> make_staged_mpi_comm(MPI_Comm comm, cudaStream_t compute,
                                           size_t stage_floats) {
  return std::make_unique<StagedMpiComm>(comm, compute, stage_floats);
}

}  // namespace autotp
