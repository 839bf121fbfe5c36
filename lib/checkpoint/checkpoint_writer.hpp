#pragma once
// Writing a checkpoint's files, shared by the trainer (from its model and optimizer) and by
// autotp-reshard (from a CheckpointReader): the same calls in the same order, so the bytes of a
// file depend only on its contents.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "checkpoint/checkpoint_reader.hpp"

namespace autotp {

// TP rank t's weights: every parameter of `plan`, in order, its local shard from source(spec, out).
// Returns the file's manifest record.
nlohmann::json write_weights_file(const std::string& dir, const PartitionPlan& plan, int t,
                                  const std::function<void(const ShardSpec&, float*)>& source);

// DP rank d's range of TP rank t's flat state (`total` elements, sharded over dp):
// source(which, lo, hi, out) fills elements [lo, hi), asked for in pieces of bounded size.
nlohmann::json write_state_file(
    const std::string& dir, int t, int d, int dp, size_t total,
    const std::function<void(OptState, size_t, size_t, float*)>& source);

// The manifest without "files".
nlohmann::json manifest_json(int64_t step, int tp, int dp, int zero_stage, const ModelConfig& model,
                             const PartitionPlan& plan, int64_t optimizer_steps,
                             const nlohmann::json& training, const nlohmann::json& sampler,
                             const nlohmann::json& rng);

}  // namespace autotp
