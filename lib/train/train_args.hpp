#pragma once
// autotp-train's command line. DeepSpeed's flag names are accepted as they are (the seed's
// `--model_name --tp_size --dp_size --seq_length --num_steps --deepspeed_config`); values not
// given on the command line come from the ds_config, then from the defaults below.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace autotp {

struct TrainArgs {
  std::string model_name = "tiny";   // preset, config.json, Hugging Face folder or autotp .h5
  std::string merge_lora = "none";   // a Hugging Face folder's LoRA adapter to merge
  std::string ds_config;             // "" = configs/tiny.json of this installation
  int64_t tp_size = 0, dp_size = 0;  // 0 = from the ds_config, else inferred
  int64_t seq_length = 128;
  int64_t num_steps = 100;
  int64_t micro_batch = 0, grad_accum = 0;  // 0 = from the ds_config
  double lr = 0;                            // 0 = from the ds_config
  int64_t zero_stage = -1;                  // -1 = from the ds_config
  int64_t seed = -1;                        // -1 = from the ds_config
  int activation_checkpointing = -1;        // 1 / 0, -1 = from the ds_config (its block)
  std::string data;       // a .txt corpus (tokenized on first use) or a .tok token file
  std::string tokenizer;  // tokenizer.json; default share/tokenizer/tokenizer.json
  std::string out_dir = "autotp_run";  // metrics.jsonl, loss.png, the token cache
  std::string device = "auto";         // auto | cpu | cuda
  std::string comm = "auto";           // auto | mpi | nccl
  int64_t log_interval = 1;
  double peak_tflops = 0;  // for MFU; 0 = the device's nominal peak
  // Checkpoints (checkpoint/manifest.hpp): SAVE_DIR/<step> every save_interval steps (0 = only
  // at the end and on a stop signal), the newest keep_last kept (0 = all). --resume continues
  // from SAVE_DIR's latest (a note, not an error, when there is none yet); --load from one.
  std::string save_dir;
  int64_t save_interval = 0, keep_last = 0;
  bool resume = false;
  std::string load;

  // Parses argv; prints help and returns false for --help. Throws Error on bad flags.
  bool parse(int argc, char** argv);
  nlohmann::json to_json() const;  // every field, for the checkpoint manifest
  static std::string share_dir();  // AUTOTP_SHARE_DIR env, else the source tree's share/
  static std::string configs_dir();
};

}  // namespace autotp
