// autotp-plan: how a ds_config's AutoTP rules split a model, and what each rank must hold,
// without launching anything.
//   autotp-plan --deepspeed_config configs/phi-4-mini.json --model_name phi-4-mini
//               [--tp_size 4] [--dp_size 2] [--dtype bf16|fp32] [--all_layers]
#include <boost/program_options.hpp>
#include <iostream>

#include "config/ds_config.hpp"
#include "config/model_config.hpp"
#include "core/cli.hpp"
#include "core/error.hpp"
#include "io/model_file.hpp"
#include "io/model_source.hpp"
#include "partition/plan_report.hpp"

namespace po = boost::program_options;
using namespace autotp;

namespace {

int run(int argc, char** argv) {
  std::string ds_path, model, dtype;
  int64_t tp = 0, dp = 0;
  po::options_description desc(
      "autotp-plan: print how a ds_config's tensor_parallel rules split a model over TP ranks\n"
      "and the memory each rank needs for weights, gradients and optimizer states");
  // clang-format off
  desc.add_options()
    ("help,h", "this help")
    ("deepspeed_config", po::value(&ds_path), "the ds_config.json (required)")
    ("model_name", po::value(&model), "autotp .h5 model file, Hugging Face folder, config.json "
                                      "or a preset: tiny, phi-4, phi-4-mini, phi-4-multimodal")
    ("model", po::value(&model), "alias of --model_name")
    ("tp_size", po::value(&tp), "TP degree (default: tensor_parallel.autotp_size, else 1)")
    ("dp_size", po::value(&dp), "DP degree (default: data_parallel_size, else 1)")
    ("dtype", po::value(&dtype), "weight dtype, bf16 or fp32 (default: bf16 if the ds_config "
                                 "enables bf16, else fp32)")
    ("all_layers", "print every layer instead of grouping identical ones");
  // clang-format on
  po::variables_map vm;
  if (!parse_command_line(argc, argv, desc, vm, "")) return 0;
  check(!ds_path.empty(), "--deepspeed_config is required (see --help)");
  check(!model.empty(), "--model_name is required (see --help)");

  const DsConfig ds = DsConfig::from_file(ds_path);
  const PartitionConfig pc = PartitionConfig::from_json(ds.tensor_parallel, ds_path);
  const ModelSource src = resolve_model(model);
  const ModelConfig& mc = src.config;
  const std::string& label = src.label;
  if (tp == 0) tp = ds.autotp_size > 0 ? ds.autotp_size : 1;
  if (dp == 0) dp = ds.data_parallel_size > 0 ? ds.data_parallel_size : 1;
  check(tp >= 1 && dp >= 1, "--tp_size and --dp_size must be positive, got ", tp, " and ", dp);

  PlanReportOptions opt;
  opt.model_label = label;
  opt.config_label = ds_path;
  // autotp-plan reads no weights, but says where autotp-train would take them from.
  opt.weights_label =
      !src.hf_dir.empty()
          ? "autotp-train loads them from " + src.hf_dir + " (converted once into its --out_dir)"
      : src.file ? "autotp-train loads them from " + model
                 : "autotp-train starts from random weights (" + src.random_from + ", the seed)";
  opt.dp = dp;
  opt.zero_stage = ds.zero_stage;
  opt.weights = ds.bf16 ? DType::BF16 : DType::F32;
  if (!dtype.empty()) {
    check(dtype == "bf16" || dtype == "fp32", "--dtype must be bf16 or fp32, got '", dtype, "'");
    opt.weights = dtype == "bf16" ? DType::BF16 : DType::F32;
  }
  opt.all_layers = vm.count("all_layers") > 0;

  const PartitionPlan plan = build_plan(pc, mc, tp);
  print_plan_report(std::cout, plan, pc, mc, opt);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return tool_main("autotp-plan", [&] { return run(argc, argv); });
}
