// autotp-plan: how a ds_config's AutoTP rules split a model, and what each rank allocates
// (train/memory_plan.hpp: weights, gradients, optimizer, activations at the given sequence and
// micro-batch, with and without activation checkpointing), without launching anything.
//   autotp-plan --deepspeed_config configs/phi-4-mini.json --model_name phi-4-mini
//               [--tp_size 4] [--dp_size 2] [--seq_length 2048] [--micro_batch_size 4]
//               [--activation_checkpointing true|false] [--device cuda|cpu]
//               [--device_memory_gib 80] [--all_layers] [--layers 8] [--zero_stage 2]
#include <boost/program_options.hpp>
#include <iostream>

#include "config/ds_config.hpp"
#include "config/model_config.hpp"
#include "core/cli.hpp"
#include "core/error.hpp"
#include "data/sampler.hpp"
#include "io/model_file.hpp"
#include "io/model_source.hpp"
#include "partition/plan_report.hpp"
#include "train/memory_plan.hpp"
#include "train/train_args.hpp"

namespace po = boost::program_options;
using namespace autotp;

namespace {

int run(int argc, char** argv) {
  std::string ds_path, model, device;
  int64_t tp = 0, dp = 0, seq = TrainArgs{}.seq_length, micro = 0, layers = 0, zero = -1;
  int ckpt = -1;
  double memory_gib = 0;
  po::options_description desc(
      "autotp-plan: print how a ds_config's tensor_parallel rules split a model over TP ranks\n"
      "and the memory each rank of autotp-train allocates");
  // clang-format off
  desc.add_options()
    ("help,h", "this help")
    ("deepspeed_config", po::value(&ds_path), "the ds_config.json (required)")
    ("model_name", po::value(&model), "autotp .h5 model file, Hugging Face folder, config.json "
                                      "or a preset: tiny, phi-4, phi-4-mini, phi-4-multimodal")
    ("model", po::value(&model), "alias of --model_name")
    ("tp_size", po::value(&tp), "TP degree (default: tensor_parallel.autotp_size, else 1)")
    ("dp_size", po::value(&dp), "DP degree (default: data_parallel_size, else 1)")
    ("seq_length", po::value(&seq), "tokens per sample (default: autotp-train's, 128)")
    ("micro_batch_size", po::value(&micro), "samples per micro-batch per DP rank (default: the "
                                            "ds_config's train_micro_batch_size_per_gpu)")
    ("device", po::value(&device), "count the memory as cuda or cpu allocates it (default: cuda "
                                   "when the ds_config enables bf16, else cpu)")
    ("device_memory_gib", po::value(&memory_gib), "fail, saying what is missing, when a rank "
                                                  "needs more than this")
    ("all_layers", "print every layer instead of grouping identical ones")
    ("layers", po::value(&layers), "override num_hidden_layers, as autotp-bench --layers "
                                   "(0 = the model's)")
    ("zero_stage", po::value(&zero), "override zero_optimization.stage (0, 1 or 2)");
  // clang-format on
  add_activation_checkpointing_option(desc, ckpt);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, desc, vm, "")) return 0;
  check(!ds_path.empty(), "--deepspeed_config is required (see --help)");
  check(!model.empty(), "--model_name is required (see --help)");

  DsConfig ds = DsConfig::from_file(ds_path);
  const PartitionConfig pc = PartitionConfig::from_json(ds.tensor_parallel, ds_path);
  check(layers >= 0, "--layers must not be negative, got ", layers);
  check(zero >= -1 && zero <= 2, "--zero_stage must be 0, 1 or 2, got ", zero);
  ModelSource src = resolve_model(model);
  override_layers(src, layers, model);
  const ModelConfig& mc = src.config;
  if (zero >= 0) ds.zero_stage = int(zero);
  if (tp == 0) tp = ds.autotp_size > 0 ? ds.autotp_size : 1;
  if (dp == 0) dp = ds.data_parallel_size > 0 ? ds.data_parallel_size : 1;
  check(tp >= 1 && dp >= 1, "--tp_size and --dp_size must be positive, got ", tp, " and ", dp);
  check(seq > 0, "--seq_length must be positive, got ", seq);
  check_seq_length(seq, mc.max_position_embeddings);
  if (micro == 0 && (ds.train_batch_size > 0 || ds.train_micro_batch_size_per_gpu > 0)) {
    ds.resolve_batch(dp);
    micro = ds.train_micro_batch_size_per_gpu;
  }
  if (micro == 0) micro = 1;  // the ds_config says nothing about the batch
  check(micro > 0, "--micro_batch_size must be positive, got ", micro);
  if (device.empty()) device = ds.bf16 ? "cuda" : "cpu";
  check(device == "cpu" || device == "cuda", "--device must be cpu or cuda, got '", device, "'");
  check(memory_gib >= 0, "--device_memory_gib must not be negative, got ", memory_gib);

  PlanReportOptions opt;
  opt.model_label = src.label;
  opt.config_label = ds_path;
  // autotp-plan reads no weights, but says where autotp-train would take them from.
  opt.weights_label =
      !src.hf_dir.empty()
          ? "autotp-train loads them from " + src.hf_dir + " (converted once into its --out_dir)"
      : src.file ? "autotp-train loads them from " + model
                 : "autotp-train starts from random weights (" + src.random_from + ", the seed)";
  opt.dp = dp;
  opt.zero_stage = ds.zero_stage;
  opt.device = device;
  opt.all_layers = vm.count("all_layers") > 0;

  const PartitionPlan plan = build_plan(pc, mc, tp);
  const MemoryPlanArgs ma =
      memory_plan_args(ds, mc, plan, int(dp), micro, seq, ds.activation_checkpointing.on(ckpt),
                       DeviceSizes::of(device));
  print_plan_report(std::cout, plan, pc, mc, opt);
  std::cout << "\n";
  const RankMemory need = print_memory_plan(std::cout, ma);
  if (memory_gib > 0) {
    const size_t have = size_t(memory_gib * double(size_t(1) << 30));
    const std::string missing = memory_shortfall(ma, need, have, "--device_memory_gib");
    check(missing.empty(), missing);
    std::cout << "fits in --device_memory_gib " << memory_gib << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return tool_main("autotp-plan", [&] { return run(argc, argv); });
}
