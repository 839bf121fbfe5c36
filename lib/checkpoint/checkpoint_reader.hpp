#pragma once
// Reads a checkpoint's shards for any target plan: the same TP degree and cut reads the stored
// ranges directly; another one (resharding) assembles each parameter's full tensor from the
// stored TP ranks (insert_shard) and cuts the target's shard from it (extract_shard), one
// parameter at a time, so memory stays at a few tensors. Both elastic resume (in memory) and
// autotp-reshard (into files) read through this class.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/manifest.hpp"
#include "checkpoint/shard_file.hpp"
#include "model/param_layout.hpp"
#include "optim/zero_optimizer.hpp"

namespace autotp {

using OptState = ZeroOptimizer::State;
const char* state_dataset(OptState s);  // "master", "exp_avg", "exp_avg_sq"

class CheckpointReader {
 public:
  explicit CheckpointReader(Manifest m);
  const Manifest& manifest() const { return m_; }

  // Elements [lo, hi) of TP rank t's flat optimizer state under `target` (a layout of the same
  // model at any TP degree).
  void read_state(const ParamLayout& target, int t, OptState which, size_t lo, size_t hi,
                  float* out);
  // TP rank t's shard of one parameter under `spec` (of any TP degree), from the weight files.
  void read_weight(const ShardSpec& spec, int t, float* out);
  // The whole parameter, from the weight files.
  std::vector<float> full_weight(const std::string& name);

 private:
  const ShardReader& file(const std::string& name);
  // Elements [lo, hi) of stored TP rank r's flat state, across its DP files.
  void read_stored(int r, const char* which, size_t lo, size_t hi, float* out);
  // Stored parameter `name` assembled whole; key says from which dataset.
  const std::vector<float>& full(const std::string& name, const char* which);

  Manifest m_;
  ParamLayout stored_;
  std::map<std::string, std::unique_ptr<ShardReader>> files_;
  std::string full_key_;
  std::vector<float> full_;
};

}  // namespace autotp
