#pragma once
// What autotp-plan prints: the plan of every parameter and the memory each rank needs.
//
// Memory per rank, for tp x dp ranks, with N = the elements of one TP rank's shards (the same on
// every TP rank) laid out as one flat buffer in parameter order (ZeRO's flat buffer):
//   weights    N * sizeof(compute dtype)                    (every DP rank holds them all)
//   gradients  fp32; ZeRO-2 keeps a 1/dp shard:  S * 4,    S = ceil(N / dp) (N padded to dp)
//                    ZeRO-0/1 keep them whole:   N * 4
//   optimizer  Adam m and v in fp32, plus an fp32 master copy when the weights are bf16:
//                    ZeRO-1/2: S * (8 or 12);    ZeRO-0: N * (8 or 12)
// Activations and communication buffers are not counted.
#include <cstdint>
#include <ostream>
#include <string>

#include "config/model_config.hpp"
#include "core/dtype.hpp"
#include "partition/plan.hpp"

namespace autotp {

struct RankMemory {
  int64_t local_numel = 0;  // N
  int64_t shard_numel = 0;  // S: this DP rank's part of the padded flat buffer (ZeRO >= 1)
  int64_t weight_bytes = 0, grad_bytes = 0, optim_bytes = 0;
  int64_t total() const { return weight_bytes + grad_bytes + optim_bytes; }
};

RankMemory rank_memory(const PartitionPlan& plan, int64_t dp, DType weights, int zero_stage);

struct PlanReportOptions {
  std::string model_label;    // "phi-4-mini (preset)", a file name, ...
  std::string config_label;   // the ds_config file
  std::string weights_label;  // where the weights would come from; "" = no line
  int64_t dp = 1;
  DType weights = DType::BF16;
  int zero_stage = 2;
  bool all_layers = false;  // print every layer instead of grouping identical ones
};

void print_plan_report(std::ostream& os, const PartitionPlan& plan, const PartitionConfig& pc,
                       const ModelConfig& mc, const PlanReportOptions& opt);

std::string format_bytes(int64_t bytes);  // "1.50 GiB", "768.00 KiB", "12 B"

}  // namespace autotp
