#pragma once
// What autotp-plan prints of the partition: the plan of every parameter (its global and
// local shapes, elements per TP rank, the rule, each rank's ranges). The memory each rank
// allocates is train/memory_plan.hpp's (printed after this by the tool).
#include <cstdint>
#include <ostream>
#include <string>

#include "config/model_config.hpp"
#include "partition/plan.hpp"

namespace autotp {

struct PlanReportOptions {
  std::string model_label;    // "phi-4-mini (preset)", a file name, ...
  std::string config_label;   // the ds_config file
  std::string weights_label;  // where the weights would come from; "" = no line
  int64_t dp = 1;
  int zero_stage = 2;
  std::string device;       // what the memory is counted for: "cpu" or "cuda"
  bool all_layers = false;  // print every layer instead of grouping identical ones
};

void print_plan_report(std::ostream& os, const PartitionPlan& plan, const PartitionConfig& pc,
                       const ModelConfig& mc, const PlanReportOptions& opt);

}  // namespace autotp
