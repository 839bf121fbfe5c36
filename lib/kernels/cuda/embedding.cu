// Token embedding lookup over a (possibly vocab- or hidden-sharded) table; one block per token.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// out[i, :] += table[row(id_i), :] when a block holds id_i. The table is fp32, or bf16 where
// the parameters are narrow.
template <typename T>
__global__ void embedding_forward_kernel(const int32_t* ids, const T* table, int64_t dim,
                                         Blocks blocks, float* out) {
  const int64_t i = blockIdx.x;
  const int64_t row = blocks.local(ids[i]);
  if (row < 0) return;
  const T* e = table + row * dim;
  float* o = out + i * dim;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) o[j] += to_float(e[j]);
}

// The rows of a table its blocks cover.
int64_t table_rows(const std::vector<VocabBlock>& blocks) {
  int64_t rows = 0;
  for (const VocabBlock& k : blocks) rows = std::max(rows, k.col + k.len);
  return rows;
}

__global__ void iota_kernel(int32_t* v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    v[i] = int32_t(i);
}

// dtable[row(id), :] += sum of dout[i, :] over the tokens i with that id, in token order,
// skipping the padding id (nn.Embedding(padding_idx) gives that row no gradient). The tokens
// arrive sorted by id (a stable sort keeps token order within an id); the block at the start
// of each run of equal ids sums the run. No atomics: the same ids give the same bits, run
// after run, which keeps GPU training reproducible and its resume bit-exact.
__global__ void embedding_backward_kernel(const int32_t* sorted_ids, const int32_t* order,
                                          int64_t n, const float* dout, int64_t dim, Blocks blocks,
                                          int64_t padding_idx, float* dtable) {
  const int64_t k0 = blockIdx.x;
  const int32_t id = sorted_ids[k0];
  if ((k0 > 0 && sorted_ids[k0 - 1] == id) || id == padding_idx) return;
  const int64_t row = blocks.local(id);
  if (row < 0) return;
  int64_t k1 = k0 + 1;
  while (k1 < n && sorted_ids[k1] == id) ++k1;
  float* d = dtable + row * dim;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    float acc = 0.0f;
    for (int64_t k = k0; k < k1; ++k) acc += dout[int64_t(order[k]) * dim + j];
    d[j] += acc;
  }
}
}  // namespace

void CudaBackendImpl::embedding_forward(const int32_t* ids, int64_t n, const float* table,
                                        int64_t dim, const std::vector<VocabBlock>& blocks,
                                        float* out) {
  if (n <= 0 || dim <= 0) return;
  check(n <= INT32_MAX, "cuda embedding_forward: ", n, " tokens exceed the grid size");
  const Blocks b = to_blocks(blocks, "embedding_forward");
  Timed t(*this, "embedding");
  wrote(out, size_t(n * dim) * sizeof(float));
  const __nv_bfloat16* t16 =
      params_narrow_ ? shadow_of(table, size_t(table_rows(blocks) * dim)) : nullptr;
  with_input(t16, table, [&](auto* t) {
    embedding_forward_kernel<<<unsigned(n), kThreads, 0, stream_>>>(ids, t, dim, b, out);
  });
  AUTOTP_LAUNCHED("embedding_forward_kernel");
}

void CudaBackendImpl::embedding_backward(const int32_t* ids, int64_t n, const float* dout,
                                         int64_t dim, const std::vector<VocabBlock>& blocks,
                                         int64_t padding_idx, float* dtable) {
  if (n <= 0 || dim <= 0) return;
  check(n <= INT32_MAX, "cuda embedding_backward: ", n, " tokens exceed the grid size");
  const Blocks b = to_blocks(blocks, "embedding_backward");
  Timed t(*this, "embedding");
  const int64_t rows = table_rows(blocks);
  wrote(dtable, size_t(rows * dim) * sizeof(float));
  // One scratch buffer: sorted ids, token order before and after the sort, cub's workspace.
  const int num = int(n);
  size_t temp_bytes = 0;
  AUTOTP_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, (int32_t*)nullptr,
                                              (const int32_t*)nullptr, (int32_t*)nullptr, num, 0,
                                              32, stream_));
  const size_t ints = 3 * size_t(n);
  auto* base =
      static_cast<int32_t*>(scratch(Scratch::EmbedSort, ints * sizeof(int32_t) + temp_bytes + 256));
  int32_t *sorted = base, *order_in = base + n, *order = base + 2 * n;
  void* temp =
      reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(base + ints) + 255) & ~uintptr_t(255));
  iota_kernel<<<grid_for(size_t(n)), kThreads, 0, stream_>>>(order_in, n);
  AUTOTP_LAUNCHED("iota_kernel");
  AUTOTP_CUDA(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, ids, sorted, order_in, order, num,
                                              0, 32, stream_));
  embedding_backward_kernel<<<unsigned(n), kThreads, 0, stream_>>>(sorted, order, n, dout, dim, b,
                                                                   padding_idx, dtable);
  AUTOTP_LAUNCHED("embedding_backward_kernel");
}

}  // namespace autotp::cuda
