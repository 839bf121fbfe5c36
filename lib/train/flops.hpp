#pragma once
// What one training step must compute and move: the FLOP count that turns tokens/s into
// TFLOP/s and MFU (anchors.md's count, so that our numbers compare with the reference's), and
// the lower bounds ("floors") autotp-bench prints next to its measurements.
#include <cstddef>
#include <cstdint>

#include "config/model_config.hpp"

namespace autotp {

struct StepFlops {
  // anchors.md: 6 N tokens + 12 L H T tokens, N = every parameter (a tied embedding once), the
  // attention term counted without the causal half. The numerator of TFLOP/s and MFU.
  double total = 0;
  // The linears' matmuls, 3 per weight use (forward, input gradient, weight gradient):
  // 6 tokens (sum of the linear weights, lm_head included). Norms and the embedding gather are
  // in `total` but are no GEMM.
  double gemm = 0;
  // The attention scores and weighted sums as anchors.md counts them (12 L nq hd T tokens); a
  // causal kernel computes about half of it.
  double attention = 0;
};

// tokens: tokens per step of the whole job; seq_length: T.
StepFlops count_step_flops(const ModelConfig& mc, int64_t seq_length, int64_t tokens);

// Bytes that the memory-bound kernels of one step move through one rank's device memory, with
// activations of act_bytes per element (4 = fp32 buffers, 2 = bf16). GEMM operands are left
// out (they stream behind the math) and so is attention (a fused kernel keeps its scores
// on chip). What is counted, each term read + write:
//   optimizer:     AdamW reads master, m, v, grad and writes master, m, v (28 B per element of
//                  the own ZeRO shard); per local parameter the gradients are zeroed (4 B) and
//                  the compute copy of the weights is refreshed (read 4 B, write 2 B).
//   activations:   per token and layer, in elements: RMSNorm 2 x (forward 2H + backward 3H),
//                  residual adds 2 x 3H forward and again backward, RoPE on q and k
//                  2 x 2(q + kv) (forward + backward), SwiGLU 3I forward + 5I backward; plus
//                  the embedding's row gather and scatter, 4H per token.
//   cross_entropy: the logits [tokens, V] read once for the max and the sum of exponentials
//                  (one online pass) and once by the gradient pass, which writes the gradient
//                  in bf16 for the lm_head's GEMMs (2 B).
struct StepTraffic {
  double optimizer = 0, activations = 0, cross_entropy = 0;
  double total() const { return optimizer + activations + cross_entropy; }
};

// tokens_per_rank: tokens one DP rank computes per step; tp: the TP degree (widths are split
// by it); local_params: this rank's flat parameter count; state_numel: elements of its
// optimizer state shard.
StepTraffic estimate_traffic(const ModelConfig& mc, int64_t tokens_per_rank, int64_t tp,
                             size_t local_params, size_t state_numel, double act_bytes);

}  // namespace autotp
