// Cross-entropy in the vocab-parallel form (Megatron's): each rank reduces its logits to a max
// and a sum in one pass, the model all-reduces the max and the rescaled sums between these
// kernels, so the full logits are never gathered. One block per row; K elements per access (8
// when V % 8 == 0 and the logits are 16-byte aligned, the case of every real vocabulary).
#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

namespace {
constexpr int kCeThreads = 512;  // rows are long (V up to 200k local columns)

// Online softmax statistics (one read of the row): each thread keeps its running max mx and
// sum = sum exp(l - mx), rescaling the sum when the max grows; the block then combines
//   m = max_t mx_t,   s = sum_t sum_t * exp(mx_t - m).
// The sums are doubles, as on the CPU (V reaches 200k), over fp32 sums of K exponentials (fast
// __expf: relative error ~1e-6, far below what bf16 logits carry).
// z = the target's logit when this shard's blocks hold the target, else 0.
// The logits are fp32, or bf16 where the lm_head's GEMM wrote them narrow.
template <int K, typename InT>
__global__ void ce_stats_kernel(const InT* logits, int64_t V, const int32_t* targets, Blocks blocks,
                                float* m, float* s, float* z) {
  __shared__ float red_max[32];
  __shared__ double red_sum[32];
  const int64_t n = blockIdx.x;
  const InT* l = logits + n * V;
  float mx = -INFINITY;
  double sum = 0.0;
  auto visit = [&](const float(&a)[K]) {
    float cm = a[0];
#pragma unroll
    for (int i = 1; i < K; ++i) cm = fmaxf(cm, a[i]);
    if (cm > mx) {  // exp(-inf) = 0 clears the empty sum of the first visit
      sum *= double(expf(mx - cm));
      mx = cm;
    }
    // K terms in fp32, then one double add: the kernel was bound by instructions (an accurate
    // expf and a conversion to double per element), not by memory.
    float part = 0.0f;
#pragma unroll
    for (int i = 0; i < K; ++i) part += __expf(a[i] - mx);
    sum += double(part);
  };
  // Two loads in flight per thread: with one, a block per row kept too few bytes in flight to
  // cover the memory latency (2.2 of ~4.2 TB/s on bf16 logits).
  const int64_t stride = int64_t(blockDim.x) * K;
  for (int64_t v = int64_t(threadIdx.x) * K; v < V; v += 2 * stride) {
    float a[K], b[K];
    load_k<K>(l + v, a);
    const bool second = v + stride < V;
    if (second) load_k<K>(l + v + stride, b);
    visit(a);
    if (second) visit(b);
  }
  const float M = block_max(mx, red_max);
  const double part = sum > 0.0 ? sum * exp(double(mx) - double(M)) : 0.0;
  const double total = block_sum(part, red_sum);
  if (threadIdx.x == 0) {
    m[n] = M;
    s[n] = float(total);
    const int64_t c = blocks.local(targets[n]);
    z[n] = c >= 0 ? to_float(l[c]) : 0.0f;
  }
}

// s *= exp(m - mg): this rank's sum, taken against its own max, against the global max.
__global__ void ce_rescale_kernel(const float* m, const float* mg, int64_t N, float* s) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N;
       i += int64_t(gridDim.x) * blockDim.x)
    s[i] *= expf(m[i] - mg[i]);
}

// out_v = scale * (exp(l_v - m) / s - [v == target]); ignored rows 0. out is the logits
// themselves (in place: each thread writes only what it read, in the logits' own type) or a
// bf16 copy (Use::Gemm) in a scratch slot.
template <int K, typename InT, typename OutT>
__global__ void ce_backward_kernel(const InT* logits, int64_t V, const float* m, const float* s,
                                   const int32_t* targets, Blocks blocks, int32_t ignore_index,
                                   float scale, OutT* out) {
  const int64_t n = blockIdx.x;
  const InT* l = logits + n * V;
  OutT* o = out + n * V;
  const bool ignored = targets[n] == ignore_index;
  const float inv = ignored ? 0.0f : scale / s[n], mn = m[n];
  const int64_t c = ignored ? -1 : blocks.local(targets[n]);
  for (int64_t v = int64_t(threadIdx.x) * K; v < V; v += int64_t(blockDim.x) * K) {
    float a[K];
    load_k<K>(l + v, a);
#pragma unroll
    for (int i = 0; i < K; ++i) {
      a[i] = ignored ? 0.0f : __expf(a[i] - mn) * inv;
      if (v + i == c) a[i] -= scale;
    }
    store_k<K>(o + v, a);
  }
}

void check_ce(int64_t N, const char* op) {
  check(N <= INT32_MAX, "cuda ", op, ": ", N, " rows exceed the grid size");
}

// f(k) with k an integral_constant of the elements per access: 8 (16 bytes of bf16, two of
// fp32) when every row starts 16-byte aligned, 4 when V % 4 == 0, else 1.
template <typename F>
void dispatch_ce(int64_t V, bool aligned, F f) {
  if (aligned && V % 8 == 0)
    f(std::integral_constant<int, 8>{});
  else
    dispatch_k(aligned && V % 4 == 0, f);
}
}  // namespace

void CudaBackendImpl::ce_stats(const float* logits, int64_t N, int64_t V, const int32_t* targets,
                               const std::vector<VocabBlock>& blocks, float* m, float* s,
                               float* z) {
  if (N <= 0) return;
  check_ce(N, "ce_stats");
  const Blocks b = to_blocks(blocks, "ce_stats");
  Timed t(*this, "cross_entropy");
  for (float* p : {m, s, z}) wrote(p, size_t(N) * sizeof(float));
  const __nv_bfloat16* lg16 = narrow_of(logits, size_t(N * V), false);
  with_input(lg16, logits, [&](auto* l) {
    dispatch_ce(V, aligned16(logits), [&](auto k) {
      ce_stats_kernel<decltype(k)::value>
          <<<unsigned(N), kCeThreads, 0, stream_>>>(l, V, targets, b, m, s, z);
    });
  });
  AUTOTP_LAUNCHED("ce_stats_kernel");
}

void CudaBackendImpl::ce_rescale(const float* m, const float* mg, int64_t N, float* s) {
  if (N <= 0) return;
  Timed t(*this, "cross_entropy");
  wrote(s, size_t(N) * sizeof(float));
  ce_rescale_kernel<<<grid_for(size_t(N)), kThreads, 0, stream_>>>(m, mg, N, s);
  AUTOTP_LAUNCHED("ce_rescale_kernel");
}

void CudaBackendImpl::ce_backward(float* logits, int64_t N, int64_t V, const float* m,
                                  const float* s, const int32_t* targets,
                                  const std::vector<VocabBlock>& blocks, int32_t ignore_index,
                                  float scale, Use use) {
  if (N <= 0) return;
  check_ce(N, "ce_backward");
  const Blocks b = to_blocks(blocks, "ce_backward");
  Timed t(*this, "cross_entropy");
  // In place. Narrow logits become their bf16 gradient element for element (each thread
  // rewrites the bf16 it read); fp32 logits make a Use::Gemm gradient go to a scratch slot, as
  // its bf16 would overwrite logits not yet read.
  const __nv_bfloat16* lg16 = narrow_of(logits, size_t(N * V), false);
  const size_t bytes = size_t(N * V) * sizeof(float);
  __nv_bfloat16* narrow =
      lg16 ? narrow_output(logits, size_t(N * V), use, {}, Scratch::CeGrad)
           : narrow_output(logits, size_t(N * V), use, {{logits, bytes}}, Scratch::CeGrad);
  // Narrow logits with an fp32 gradient (Use::Any) cannot work in place (the fp32 would
  // overwrite bf16 not yet read); the model never asks for it.
  check(!lg16 || narrow, "cuda ce_backward: narrow logits need a Use::Gemm gradient");
  with_input(lg16, logits, [&](auto* l) {
    dispatch_ce(V, aligned16(logits, narrow), [&](auto k) {
      auto launch = [&](auto* o) {
        ce_backward_kernel<decltype(k)::value><<<unsigned(N), kCeThreads, 0, stream_>>>(
            l, V, m, s, targets, b, ignore_index, scale, o);
      };
      narrow ? launch(narrow) : launch(logits);
    });
  });
  AUTOTP_LAUNCHED("ce_backward_kernel");
}

}  // namespace autotp::cuda
