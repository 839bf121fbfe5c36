// Cross-entropy in the vocab-parallel form (Megatron's): the model all-reduces the max and the
// sums between these kernels, so the full logits are never gathered. One block per row.
#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
constexpr int kCeThreads = 512;  // rows are long (V up to 200k local columns)

__global__ void ce_max_kernel(const float* logits, int64_t V, float* m) {
  __shared__ float red[32];
  const float* l = logits + int64_t(blockIdx.x) * V;
  float mx = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, l[v]);
  mx = block_max(mx, red);
  if (threadIdx.x == 0) m[blockIdx.x] = mx;
}

// s = sum_v exp(l_v - m) accumulated in double (V reaches 200k); z = the target's logit when
// this shard's blocks hold the target, else 0.
__global__ void ce_sumexp_kernel(const float* logits, int64_t V, const float* m,
                                 const int32_t* targets, Blocks blocks, float* s, float* z) {
  __shared__ double red[32];
  const int64_t n = blockIdx.x;
  const float* l = logits + n * V;
  const float mn = m[n];
  double acc = 0.0;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) acc += exp(double(l[v] - mn));
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) {
    s[n] = float(acc);
    const int64_t c = blocks.local(targets[n]);
    z[n] = c >= 0 ? l[c] : 0.0f;
  }
}

// In place: l_v <- scale * (exp(l_v - m) / s - [v == target]); ignored rows <- 0.
__global__ void ce_backward_kernel(float* logits, int64_t V, const float* m, const float* s,
                                   const int32_t* targets, Blocks blocks, int32_t ignore_index,
                                   float scale) {
  const int64_t n = blockIdx.x;
  float* l = logits + n * V;
  if (targets[n] == ignore_index) {
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) l[v] = 0.0f;
    return;
  }
  const float inv = scale / s[n], mn = m[n];
  const int64_t c = blocks.local(targets[n]);
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    float p = expf(l[v] - mn) * inv;
    if (v == c) p -= scale;
    l[v] = p;
  }
}

void check_ce(int64_t N, const char* op) {
  check(N <= INT32_MAX, "cuda ", op, ": ", N, " rows exceed the grid size");
}
}  // namespace

void CudaBackendImpl::ce_max(const float* logits, int64_t N, int64_t V, float* m) {
  if (N <= 0) return;
  check_ce(N, "ce_max");
  Timed t(*this, "cross_entropy");
  ce_max_kernel<<<unsigned(N), kCeThreads, 0, stream_>>>(logits, V, m);
  AUTOTP_LAUNCHED("ce_max_kernel");
}

void CudaBackendImpl::ce_sumexp(const float* logits, int64_t N, int64_t V, const float* m,
                                const int32_t* targets, const std::vector<VocabBlock>& blocks,
                                float* s, float* z) {
  if (N <= 0) return;
  check_ce(N, "ce_sumexp");
  const Blocks b = to_blocks(blocks, "ce_sumexp");
  Timed t(*this, "cross_entropy");
  ce_sumexp_kernel<<<unsigned(N), kCeThreads, 0, stream_>>>(logits, V, m, targets, b, s, z);
  AUTOTP_LAUNCHED("ce_sumexp_kernel");
}

void CudaBackendImpl::ce_backward(float* logits, int64_t N, int64_t V, const float* m,
                                  const float* s, const int32_t* targets,
                                  const std::vector<VocabBlock>& blocks, int32_t ignore_index,
                                  float scale) {
  if (N <= 0) return;
  check_ce(N, "ce_backward");
  const Blocks b = to_blocks(blocks, "ce_backward");
  Timed t(*this, "cross_entropy");
  ce_backward_kernel<<<unsigned(N), kCeThreads, 0, stream_>>>(logits, V, m, s, targets, b,
                                                              ignore_index, scale);
  AUTOTP_LAUNCHED("ce_backward_kernel");
}

}  // namespace autotp::cuda
