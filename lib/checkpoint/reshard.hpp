#pragma once
// autotp-reshard and autotp-merge over the library: a checkpoint rewritten for another TP x DP
// topology (weights, master weights and Adam moments; the manifest's step, model, training
// config, sampler and RNG state carried over unchanged, so A -> B -> A gives back identical
// bytes), and the full model consolidated into an autotp model file.
#include <string>

namespace autotp {

// Writes the checkpoint at `src` (a checkpoint directory or a save directory's latest) as
// DST_SAVE_DIR/<step> for TP tp x DP dp, and DST_SAVE_DIR/latest. Error when the model's plan
// refuses tp, or DST_SAVE_DIR/<step> exists. Returns the directory written.
std::string reshard_checkpoint(const std::string& src, const std::string& dst_save_dir, int tp,
                               int dp);

// Writes the full model of the checkpoint at `src` into an autotp model file (io/model_file.hpp,
// float32), the format autotp-convert turns into safetensors.
void merge_checkpoint(const std::string& src, const std::string& out_h5);

}  // namespace autotp
