#pragma once
// What one rank of autotp-train allocates, predicted by building that rank's real Phi3Model and
// ZeroOptimizer on the sizing backend (kernels/sizing_backend.hpp) and reading what they took:
// the same constructors and the same Phi3Model::reserve() the step runs, so the prediction is
// the allocation, by construction (tests/test_memory_plan.cpp holds the CPU backend's peak to
// it). autotp-plan prints it, autotp-bench prints it beside the measured peak, and autotp-train
// refuses a layout that does not fit before it loads a weight.
//
// Per rank, for the TP-local flat buffer of N parameter elements (ParamLayout):
//   weights      the fp32 parameters (N), plus the backend's narrow weight copy (CUDA: bf16, N)
//   gradients    fp32: the model's whole buffer (N), or at ZeRO-2 over DP the optimizer's 1/dp
//                shard of the sum plus the model's gradient buckets (two of the largest
//                group of parameters, and the tied embedding's; model/grad_buckets.hpp) where
//                that is smaller
//   optimizer    Adam m and v over the rank's state (N at ZeRO-0, its 1/dp shard at ZeRO-1/2),
//                an fp32 master copy of that shard where it is not the whole buffer (else the
//                parameters are the master), and ZeRO-1/2's all-gather scratch
//   activations  everything Phi3Model::reserve(B, T) allocates: the residual stream (B*T x H
//                fp32 per layer), the per-layer activations (one set for all layers with
//                checkpointing), one logits chunk, the backward's scratch and the TP layout
//                conversions' gather buffers
// Not counted: what only evaluation allocates (Phi3Model::gather_logits), a communicator's own
// buffers (NCCL's, or MPI's staging through host memory), and DeviceSizes' exceptions.
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

#include "config/ds_config.hpp"
#include "config/model_config.hpp"
#include "kernels/sizing_backend.hpp"
#include "partition/plan.hpp"

namespace autotp {

struct MemoryPlanArgs {
  ModelConfig model;
  PartitionPlan plan;  // for plan.tp TP ranks
  int dp = 1;
  int zero_stage = 0;
  OptimizerConfig optimizer;
  double grad_clip = 0;
  int64_t micro_batch = 1, seq_length = 1;
  bool checkpointing = false;
  int64_t logits_chunk_rows = 0;  // Phi3Model::set_logits_chunk_rows
  DeviceSizes sizes = DeviceSizes::cpu();
};

struct RankMemory {
  int tp_rank = 0, dp_rank = 0;
  size_t weights = 0, gradients = 0, optimizer = 0, activations = 0;
  bool grad_buckets = false;  // the gradients are bucketed (else whole)
  size_t peak = 0;            // the sizing backend's peak: the sum (nothing is freed before a step)
  size_t total() const { return weights + gradients + optimizer + activations; }
};

// The arguments for a run of `ds` (its ZeRO stage, optimizer, gradient clipping; the
// checkpointing as `checkpointing` says) at micro-batch B x sequence T on `sizes`' device.
// Checks activation_checkpointing.number_checkpoints against the model (Error naming the key).
MemoryPlanArgs memory_plan_args(const DsConfig& ds, const ModelConfig& mc,
                                const PartitionPlan& plan, int dp, int64_t B, int64_t T,
                                bool checkpointing, const DeviceSizes& sizes);

// One rank's allocation.
RankMemory plan_rank_memory(const MemoryPlanArgs& a, int tp_rank, int dp_rank);
// The rank that needs the most: the largest over the TP ranks at DP rank 0 (ZeRO's shards are
// ceil(N / dp) from the first, so DP rank 0's is never smaller).
RankMemory plan_memory(const MemoryPlanArgs& a);

// The breakdown autotp-plan prints, with and without checkpointing, ending in the line
//   total per rank: 8.93 GiB (9,591,552,000 bytes), activation checkpointing off
// for a.checkpointing. Returns the rank memory of that line.
RankMemory print_memory_plan(std::ostream& os, const MemoryPlanArgs& a);

// "needs 45.20 GiB per rank (...) but the device has 39.10 GiB: 6.10 GiB missing; ..." when
// `need` exceeds `available` bytes, else "". `what` names the memory ("the GPU's free memory").
std::string memory_shortfall(const MemoryPlanArgs& a, const RankMemory& need, size_t available,
                             const std::string& what);

}  // namespace autotp
