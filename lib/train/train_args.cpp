#include "train/train_args.hpp"

#include <boost/program_options.hpp>
#include <cstdlib>
#include <iostream>

#include "core/cli.hpp"
#include "core/error.hpp"

namespace autotp {

namespace po = boost::program_options;

std::string TrainArgs::share_dir() {
  if (const char* e = std::getenv("AUTOTP_SHARE_DIR")) return e;
  return std::string(AUTOTP_SOURCE_DIR) + "/share";
}

std::string TrainArgs::configs_dir() {
  if (const char* e = std::getenv("AUTOTP_CONFIGS_DIR")) return e;
  return std::string(AUTOTP_SOURCE_DIR) + "/configs";
}

bool TrainArgs::parse(int argc, char** argv) {
  po::options_description d("autotp-train options");
  // clang-format off
  d.add_options()
    ("help,h", "print this help")
    ("model_name", po::value(&model_name), "model: a Hugging Face folder (config.json + "
        "model.safetensors, loaded; converted once into --out_dir), an autotp .h5 file (loaded), "
        "or a config.json or preset (tiny, phi-4, phi-4-mini, phi-4-multimodal), initialised "
        "from --seed")
    ("model", po::value(&model_name), "alias of --model_name")
    ("merge_lora", po::value(&merge_lora), "none | vision | speech: a Phi-4-multimodal "
        "folder's LoRA adapter merged into the weights (none: the adapters are dropped)")
    ("deepspeed_config", po::value(&ds_config), "ds_config.json (default configs/tiny.json)")
    ("ds_config", po::value(&ds_config), "alias of --deepspeed_config")
    ("tp_size", po::value(&tp_size), "tensor-parallel size (default: autotp_size)")
    ("dp_size", po::value(&dp_size), "data-parallel size (default: data_parallel_size)")
    ("seq_length", po::value(&seq_length), "tokens per sample")
    ("num_steps", po::value(&num_steps), "optimizer steps")
    ("micro_batch_size", po::value(&micro_batch), "samples per micro-batch per DP rank")
    ("train_micro_batch_size_per_gpu", po::value(&micro_batch), "alias of --micro_batch_size")
    ("gradient_accumulation_steps", po::value(&grad_accum), "micro-batches per step")
    ("lr", po::value(&lr), "peak learning rate (default: optimizer.params.lr)")
    ("zero_stage", po::value(&zero_stage), "ZeRO stage 0, 1 or 2 (default: zero_optimization)")
    ("seed", po::value(&seed), "seed of the initialisation and the sampler")
    ("data", po::value(&data), "corpus .txt (tokenized once into --out_dir) or a .tok file")
    ("tokenizer", po::value(&tokenizer), "tokenizer.json (default share/tokenizer)")
    ("out_dir", po::value(&out_dir), "where metrics.jsonl, loss.png and caches go")
    ("device", po::value(&device), "auto | cpu | cuda (auto: CUDA when a GPU is visible)")
    ("comm", po::value(&comm), "auto | mpi | nccl (auto: NCCL when each rank has its own GPU)")
    ("log_interval", po::value(&log_interval), "log every N steps")
    ("peak_tflops", po::value(&peak_tflops), "peak TFLOP/s per rank, for MFU")
    ("save_dir", po::value(&save_dir), "write checkpoints to SAVE_DIR/<step> (and SAVE_DIR/latest)")
    ("save_interval", po::value(&save_interval), "save every N steps (0: only at the end and "
        "when stopped by SIGUSR1/SIGTERM)")
    ("keep_last", po::value(&keep_last), "keep the newest K checkpoints (0: all)")
    ("resume", po::bool_switch(&resume), "continue from the latest checkpoint of --save_dir "
        "(starts from step 0 when there is none yet); another TP x DP is resharded on load")
    ("load", po::value(&load), "continue from this checkpoint (SAVE_DIR/<step>)")
    ("deepspeed", "accepted for DeepSpeed compatibility; ignored")
    ("local_rank", po::value<int>(), "accepted for DeepSpeed compatibility; ignored");
  // clang-format on
  add_activation_checkpointing_option(d, activation_checkpointing);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, d, vm, "usage: mpirun -np N autotp-train [options]\n"))
    return false;
  check(device == "auto" || device == "cpu" || device == "cuda",
        "--device must be auto, cpu or cuda, got '", device, "'");
  check(comm == "auto" || comm == "mpi" || comm == "nccl",
        "--comm must be auto, mpi or nccl, got '", comm, "'");
  check(seq_length > 0, "--seq_length must be positive");
  check(num_steps >= 0, "--num_steps must not be negative");
  check(save_interval >= 0 && keep_last >= 0,
        "--save_interval and --keep_last must not be negative");
  check(!resume || !save_dir.empty(), "--resume needs --save_dir (where to look for checkpoints)");
  check(!resume || load.empty(), "give --resume or --load, not both");
  if (ds_config.empty()) ds_config = configs_dir() + "/tiny.json";
  if (tokenizer.empty()) tokenizer = share_dir() + "/tokenizer/tokenizer.json";
  if (data.empty()) data = share_dir() + "/corpus/kjv.txt";
  return true;
}

nlohmann::json TrainArgs::to_json() const {
  return {{"model_name", model_name},
          {"merge_lora", merge_lora},
          {"ds_config", ds_config},
          {"tp_size", tp_size},
          {"dp_size", dp_size},
          {"seq_length", seq_length},
          {"num_steps", num_steps},
          {"micro_batch", micro_batch},
          {"grad_accum", grad_accum},
          {"lr", lr},
          {"zero_stage", zero_stage},
          {"seed", seed},
          {"activation_checkpointing", activation_checkpointing},
          {"data", data},
          {"tokenizer", tokenizer},
          {"out_dir", out_dir},
          {"device", device},
          {"comm", comm},
          {"log_interval", log_interval},
          {"save_dir", save_dir},
          {"save_interval", save_interval},
          {"keep_last", keep_last}};
}

}  // namespace autotp
