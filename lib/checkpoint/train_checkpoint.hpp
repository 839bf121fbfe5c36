#pragma once
// Saving and loading a training run's state, collective over the job. Save: every rank writes
// its files into SAVE_DIR/.tmp-<step> (weights by dp_rank 0 of each TP group, optimizer state
// by every rank), reports their checksums to world rank 0, which writes the manifest and commits
// the directory (manifest.hpp) once all ranks succeeded; on any failure (a full disk) the
// temporary directory is removed and every rank throws the same CollectiveError, the previous
// checkpoint untouched. Load: world rank 0 checks the manifest, files, checksums and model, then
// each rank reads its optimizer state for the run's topology (resharded in memory when the
// checkpoint has another one) and re-publishes the parameters from the master weights.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "checkpoint/manifest.hpp"
#include "dist/topology.hpp"
#include "model/phi3_model.hpp"
#include "optim/zero_optimizer.hpp"

namespace autotp {

struct RunState {
  nlohmann::json training;  // resolved ds_config and command line
  nlohmann::json sampler;   // Sampler::state_json()
  nlohmann::json rng;       // what seeds the run's randomness
};

// Returns the checkpoint directory written.
std::string save_checkpoint(const std::string& save_dir, int64_t step, int64_t keep_last,
                            Phi3Model& model, ZeroOptimizer& opt, const Topology& topo,
                            const RunState& state);

// model_name names the model asked for, in messages. Returns the checkpoint's manifest.
Manifest load_checkpoint(const std::string& dir, Phi3Model& model, ZeroOptimizer& opt,
                         const Topology& topo, const std::string& model_name);

}  // namespace autotp
