#pragma once
// A checkpoint is a directory SAVE_DIR/<step> holding
//   manifest.json           format, step, topology (tp, dp, zero_stage), the partition plan of
//                           the stored shards, the model config, the training config (resolved
//                           ds_config + command line), sampler and RNG state, optimizer step
//                           count, and the size and CRC-64 of every file below
//   weights_tp<t>.h5        TP rank t's shard of every parameter (ShardSpec::local_shape)
//   optim_tp<t>_dp<d>.h5    master, exp_avg, exp_avg_sq: elements [offset, offset + numel) of TP
//                           rank t's flat buffer (ParamLayout order), offset and numel being
//                           ZeroOptimizer::shard_range(total, dp, d)
// Optimizer state is always stored in that sharded form, whatever the ZeRO stage: stage 0 (which
// holds the whole buffer on every DP rank) writes only its own DP range, so any stage loads any
// checkpoint. SAVE_DIR/latest holds the step of the newest complete checkpoint.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "partition/plan.hpp"

namespace autotp {

constexpr int kCheckpointVersion = 1;

struct Manifest {
  std::string dir;  // the checkpoint directory
  nlohmann::json json;
  int64_t step = 0, optimizer_steps = 0;
  int tp = 1, dp = 1, zero_stage = 0;
  ModelConfig model;
  PartitionPlan plan;  // how the stored shards are cut (tp = this->tp)

  // Parses DIR/manifest.json and checks that it lists exactly the files its topology needs and
  // that they exist with the recorded sizes. Error names the file or field and what to do.
  static Manifest read(const std::string& dir);
  std::string path(const std::string& file) const { return dir + "/" + file; }
};

std::string weights_file_name(int tp_rank);
std::string state_file_name(int tp_rank, int dp_rank);
std::vector<std::string> checkpoint_files(int tp, int dp);

nlohmann::json plan_to_json(const PartitionPlan& plan);
PartitionPlan plan_from_json(const nlohmann::json& j, const std::string& source);
// The plan of the checkpoint's model at another TP degree, from the stored tensor_parallel
// block. Error when that block refuses tp (e.g. heads not divisible).
PartitionPlan plan_at(const Manifest& m, int tp);

// Error unless `stored` (the checkpoint's) and `asked` have the same parameters and heads.
void check_same_model(const ModelConfig& stored, const ModelConfig& asked,
                      const std::string& checkpoint, const std::string& asked_name);

// {"bytes": n, "crc64": hex} of a file, as the manifest records it.
nlohmann::json file_record(const std::string& path);
// Recomputes every listed file's CRC-64; Error names the first that differs.
void verify_checksums(const Manifest& m);
// Writes DIR/manifest.json: `j` plus "files" (name -> file_record), keys sorted.
void write_manifest(const std::string& dir, nlohmann::json j, const nlohmann::json& files);

// The newest complete checkpoint of a save dir ("" when it has none): SAVE_DIR/latest, or when a
// crash came between the rename and that file, the highest step with a manifest.
std::string latest_checkpoint(const std::string& save_dir);
// PATH itself when it is a checkpoint, else the latest checkpoint of PATH as a save dir.
std::string resolve_checkpoint(const std::string& path);
// The complete tmp_dir becomes SAVE_DIR/<step> (rename), then SAVE_DIR/latest names it (tmp +
// rename), every step fsynced; then all but the newest keep_last checkpoints are removed
// (keep_last 0 keeps all). A crash anywhere leaves the previous checkpoint loadable.
void commit_checkpoint(const std::string& tmp_dir, const std::string& save_dir, int64_t step,
                       int64_t keep_last);

}  // namespace autotp
