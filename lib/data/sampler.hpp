#pragma once
// Which training samples each DP rank reads, step by step, resumable at any DP size.
//
// Samples: the token file cut into non-overlapping windows of T+1 tokens at stride T
// (sample s = tokens [s*T, s*T + T + 1); inputs = w[0:T], targets = w[1:T+1]), so there are
// num_samples = (num_tokens - 1) / T of them.
// Epochs: epoch e visits the samples in the order perm_e = epoch_permutation(n, seed, e).
// Steps: the epoch is consumed in global batches of G = micro_batch * grad_accum * dp samples;
// of the global batch starting at position q, DP rank d takes positions q + d, q + d + dp,
// q + d + 2dp, ... (DeepSpeed's randperm[dp_rank::dp_size], per batch) and cuts its G/dp
// samples into grad_accum micro-batches of micro_batch, in order. A last global batch that
// the epoch cannot fill is dropped: the next step starts epoch e+1 at position 0.
// State: (epoch, position), position counting GLOBAL samples consumed in the epoch, so a run
// resumed with another dp (same G) reads exactly the global batches it would have read; with
// another G it reads the same sample sequence, cut differently (only the dropped tail of the
// epoch can differ). All TP ranks of a DP rank compute the same samples (check_tp_identical).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace autotp {

class Comm;
class TokenFile;

// The permutation of 0..n-1 for (seed, epoch). splitmix64 seeded with
// seed ^ (0x9E3779B97F4A7C15 * (epoch + 1)) drives Fisher-Yates (i = n-1 down to 1, j drawn
// uniformly from 0..i by rejection), so the order is the same on every platform and compiler
// (std::shuffle and std::uniform_int_distribution are implementation-defined).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

struct SamplerConfig {
  int64_t seq_length = 0;  // T
  int64_t micro_batch = 1;
  int64_t grad_accum = 1;
  int64_t dp = 1, dp_rank = 0;
  uint64_t seed = 0;
  int64_t global_batch() const { return micro_batch * grad_accum * dp; }
};

struct SamplerState {
  int64_t epoch = 0;
  int64_t position = 0;  // global samples consumed in this epoch
};

class Sampler {
 public:
  Sampler(int64_t num_tokens, const SamplerConfig& cfg, SamplerState state = {});

  int64_t num_samples() const { return num_samples_; }
  int64_t steps_per_epoch() const { return num_samples_ / cfg_.global_batch(); }
  const SamplerConfig& config() const { return cfg_; }
  // The state before the next step (already moved to the next epoch if this one is spent).
  SamplerState state() const;

  // This DP rank's sample ids for the next step: grad_accum micro-batches of micro_batch.
  std::vector<std::vector<int64_t>> peek() const;
  std::vector<std::vector<int64_t>> next();  // peek() and advance by one global batch
  // Every DP rank's samples of the next step, in position order (G ids).
  std::vector<int64_t> peek_global() const;

  // {"epoch", "position", "seed", "seq_length", "num_samples"}; restoring checks that seed,
  // seq_length and num_samples match (else the positions would mean other samples).
  nlohmann::json state_json() const;
  void restore(const nlohmann::json& j);

 private:
  const std::vector<int64_t>& permutation(int64_t epoch) const;
  SamplerConfig cfg_;
  int64_t num_samples_ = 0;
  SamplerState state_;
  mutable int64_t perm_epoch_ = -1;
  mutable std::vector<int64_t> perm_;
};

// Writes the samples' inputs and targets, [samples.size(), T] each, row-major.
void fill_batch(const TokenFile& tokens, int64_t seq_length, const std::vector<int64_t>& samples,
                int32_t* inputs, int32_t* targets);

// Error when seq_length exceeds the model's max_position_embeddings.
void check_seq_length(int64_t seq_length, int64_t max_position_embeddings);

// Collective over the TP group: Error on every rank of it unless all its ranks hold the same
// step (compared by an FNV-1a hash of the ids, whose min and max over the group must agree).
void check_tp_identical(Comm& tp, int64_t dp_rank, const std::vector<std::vector<int64_t>>& step);

}  // namespace autotp
