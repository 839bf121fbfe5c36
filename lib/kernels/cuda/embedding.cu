// Token embedding lookup over a (possibly vocab- or hidden-sharded) table; one block per token.
#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
// out[i, :] += table[row(id_i), :] when a block holds id_i.
__global__ void embedding_forward_kernel(const int32_t* ids, const float* table, int64_t dim,
                                         Blocks blocks, float* out) {
  const int64_t i = blockIdx.x;
  const int64_t row = blocks.local(ids[i]);
  if (row < 0) return;
  const float* e = table + row * dim;
  float* o = out + i * dim;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) o[j] += e[j];
}

// dtable[row(id_i), :] += dout[i, :], skipping the padding id (nn.Embedding(padding_idx) gives
// that row no gradient). Tokens repeat, hence the atomics.
__global__ void embedding_backward_kernel(const int32_t* ids, const float* dout, int64_t dim,
                                          Blocks blocks, int64_t padding_idx, float* dtable) {
  const int64_t i = blockIdx.x;
  if (ids[i] == padding_idx) return;
  const int64_t row = blocks.local(ids[i]);
  if (row < 0) return;
  const float* g = dout + i * dim;
  float* d = dtable + row * dim;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) atomicAdd(d + j, g[j]);
}
}  // namespace

void CudaBackendImpl::embedding_forward(const int32_t* ids, int64_t n, const float* table,
                                        int64_t dim, const std::vector<VocabBlock>& blocks,
                                        float* out) {
  if (n <= 0 || dim <= 0) return;
  check(n <= INT32_MAX, "cuda embedding_forward: ", n, " tokens exceed the grid size");
  const Blocks b = to_blocks(blocks, "embedding_forward");
  Timed t(*this, "embedding");
  embedding_forward_kernel<<<unsigned(n), kThreads, 0, stream_>>>(ids, table, dim, b, out);
  AUTOTP_LAUNCHED("embedding_forward_kernel");
}

void CudaBackendImpl::embedding_backward(const int32_t* ids, int64_t n, const float* dout,
                                         int64_t dim, const std::vector<VocabBlock>& blocks,
                                         int64_t padding_idx, float* dtable) {
  if (n <= 0 || dim <= 0) return;
  check(n <= INT32_MAX, "cuda embedding_backward: ", n, " tokens exceed the grid size");
  const Blocks b = to_blocks(blocks, "embedding_backward");
  Timed t(*this, "embedding");
  embedding_backward_kernel<<<unsigned(n), kThreads, 0, stream_>>>(ids, dout, dim, b, padding_idx,
                                                                   dtable);
  AUTOTP_LAUNCHED("embedding_backward_kernel");
}

}  // namespace autotp::cuda
