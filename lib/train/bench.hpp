#pragma once
// autotp-bench: the training step of autotp-train (forward, backward, ZeRO AdamW step,
// params_changed) on the model's weights (random for a preset or config.json) and random token
// ids, timed. Prints tokens/s, TFLOP/s and MFU as anchors.md counts them, peak memory beside
// train/memory_plan.hpp's prediction of it, the floor (GEMM FLOPs over a measured matmul rate,
// memory-bound bytes over a measured copy bandwidth) and, with --profile, where the step time
// goes. tests/gpu/hf_reference_bench.py prints the same lines and JSON keys for transformers, so
// the two compare side by side (tests/gpu/run_bench.sh).
#include <mpi.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace autotp {

struct BenchArgs {
  std::string model = "tiny";  // io/model_source.hpp: preset, config.json, folder or .h5
  std::string merge_lora = "none";
  std::string cache_dir = "autotp_run";  // a Hugging Face folder's conversion
  int64_t layers = 0;                    // 0 = the model's num_hidden_layers
  int64_t seq_length = 128;
  int64_t micro_batch = 1, grad_accum = 1;
  int64_t tp_size = 0, dp_size = 0;  // 0 = TP 1, DP the rest of the world
  int64_t zero_stage = 2;
  int64_t steps = 10, warmup = 3;
  bool profile = false;
  int64_t profile_steps = 3;  // extra steps run with the timers on, after the timed ones
  std::string ds_config;      // "" = partition specs from the model's shape, AdamW defaults
  double grad_clip = 1.0;     // when no ds_config is given
  std::string device = "auto";
  std::string comm = "auto";
  double peak_tflops = 0;             // 0 = the device's nominal peak
  int64_t logits_chunk_rows = 0;      // lm_head + cross-entropy rows at a time; 0 = the model's
  int activation_checkpointing = -1;  // 1 / 0; -1 = the --ds_config's block (off without one)
  int64_t gemm_size = 0;  // n of the n^3 matmul that measures the GEMM rate; 0 = by device
  std::string json;       // "" = none
  int64_t seed = 1234;

  bool parse(int argc, char** argv);  // false after --help; Error on bad flags
};

// Collective over `world`; rank 0 prints and writes the JSON. Returns the result object.
nlohmann::json run_bench(const BenchArgs& a, MPI_Comm world = MPI_COMM_WORLD);

}  // namespace autotp
