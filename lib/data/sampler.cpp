#include "data/sampler.hpp"

#include <cstring>

#include "core/error.hpp"
#include "core/fnv1a.hpp"
#include "data/token_file.hpp"
#include "dist/comm.hpp"

namespace autotp {

namespace {

// splitmix64 (Steele, Lea, Flood 2014): state += golden ratio, then a 64-bit finaliser.
struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound): reject the top partial block of 2^64 so every value is equally likely.
  uint64_t below(uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do x = next();
    while (x >= limit);
    return x % bound;
  }
};

}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  SplitMix64 rng{seed ^ (0x9E3779B97F4A7C15ull * uint64_t(epoch + 1))};
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.below(uint64_t(i) + 1)]);
  return p;
}

Sampler::Sampler(int64_t num_tokens, const SamplerConfig& cfg, SamplerState state)
    : cfg_(cfg), state_(state) {
  check(cfg.seq_length > 0, "seq_length must be positive, got ", cfg.seq_length);
  check(cfg.micro_batch > 0 && cfg.grad_accum > 0, "micro_batch (", cfg.micro_batch,
        ") and gradient_accumulation_steps (", cfg.grad_accum, ") must be positive");
  check(cfg.dp > 0 && cfg.dp_rank >= 0 && cfg.dp_rank < cfg.dp, "dp_rank ", cfg.dp_rank,
        " is not in 0..", cfg.dp - 1);
  num_samples_ = num_tokens > 1 ? (num_tokens - 1) / cfg.seq_length : 0;
  check(num_samples_ >= cfg.global_batch(), "the corpus has ", num_tokens,
        " tokens: ", num_samples_, " samples of seq_length ", cfg.seq_length,
        " + 1, fewer than one global batch of ", cfg.global_batch(), " (micro_batch ",
        cfg.micro_batch, " x gradient_accumulation_steps ", cfg.grad_accum, " x dp ", cfg.dp,
        "): use more text, a shorter seq_length or a smaller batch");
  check(state.epoch >= 0 && state.position >= 0, "sampler state (epoch ", state.epoch,
        ", position ", state.position, ") is negative");
}

SamplerState Sampler::state() const {
  SamplerState s = state_;
  if (s.position + cfg_.global_batch() > num_samples_) s = {s.epoch + 1, 0};  // drop the tail
  return s;
}

const std::vector<int64_t>& Sampler::permutation(int64_t epoch) const {
  if (perm_epoch_ != epoch) {
    perm_ = epoch_permutation(num_samples_, cfg_.seed, epoch);
    perm_epoch_ = epoch;
  }
  return perm_;
}

std::vector<int64_t> Sampler::peek_global() const {
  SamplerState s = state();
  const auto& perm = permutation(s.epoch);
  return std::vector<int64_t>(perm.begin() + s.position,
                              perm.begin() + s.position + cfg_.global_batch());
}

std::vector<std::vector<int64_t>> Sampler::peek() const {
  SamplerState s = state();
  const auto& perm = permutation(s.epoch);
  std::vector<std::vector<int64_t>> step(size_t(cfg_.grad_accum));
  int64_t j = 0;  // j-th sample of this rank: position q + dp_rank + j*dp
  for (auto& micro : step)
    for (int64_t b = 0; b < cfg_.micro_batch; ++b, ++j)
      micro.push_back(perm[size_t(s.position + cfg_.dp_rank + j * cfg_.dp)]);
  return step;
}

std::vector<std::vector<int64_t>> Sampler::next() {
  auto step = peek();
  state_ = state();
  state_.position += cfg_.global_batch();
  return step;
}

nlohmann::json Sampler::state_json() const {
  SamplerState s = state();
  return {{"epoch", s.epoch},
          {"position", s.position},
          {"seed", cfg_.seed},
          {"seq_length", cfg_.seq_length},
          {"num_samples", num_samples_}};
}

void Sampler::restore(const nlohmann::json& j) {
  auto get = [&](const char* key) -> nlohmann::json {
    check(j.is_object() && j.contains(key), "sampler state ", j.dump(), " has no '", key, "'");
    return j.at(key);
  };
  check(get("seed").get<uint64_t>() == cfg_.seed, "sampler state was saved with seed ",
        get("seed").dump(), " but this run has seed ", cfg_.seed,
        ": use the same seed to resume, or start a new run");
  check(get("seq_length").get<int64_t>() == cfg_.seq_length,
        "sampler state was saved with "
        "seq_length ",
        get("seq_length").dump(), " but this run has ", cfg_.seq_length,
        ": resume with the same seq_length");
  check(get("num_samples").get<int64_t>() == num_samples_,
        "sampler state was saved for a corpus "
        "of ",
        get("num_samples").dump(), " samples but this token file gives ", num_samples_,
        ": resume with the same token file");
  SamplerState s{get("epoch").get<int64_t>(), get("position").get<int64_t>()};
  check(s.epoch >= 0 && s.position >= 0 && s.position <= num_samples_, "sampler state ", j.dump(),
        " is out of range");
  state_ = s;
}

void fill_batch(const TokenFile& tokens, int64_t seq_length, const std::vector<int64_t>& samples,
                int32_t* inputs, int32_t* targets) {
  const int64_t T = seq_length;
  std::vector<int32_t> w(size_t(T + 1));
  for (size_t b = 0; b < samples.size(); ++b) {
    tokens.read(samples[b] * T, T + 1, w.data());
    std::memcpy(inputs + b * T, w.data(), size_t(T) * sizeof(int32_t));
    std::memcpy(targets + b * T, w.data() + 1, size_t(T) * sizeof(int32_t));
  }
}

void check_seq_length(int64_t seq_length, int64_t max_position_embeddings) {
  check(seq_length <= max_position_embeddings, "seq_length ", seq_length,
        " exceeds the model's max_position_embeddings ", max_position_embeddings,
        ": use --seq_length ", max_position_embeddings, " or less");
}

void check_tp_identical(Comm& tp, int64_t dp_rank, const std::vector<std::vector<int64_t>>& step) {
  uint64_t h = kFnv1aOffset;
  for (const auto& micro : step) {
    h = fnv1a(micro.data(), micro.size() * sizeof(int64_t), h);
    h = fnv1a("|", 1, h);
  }
  // Four 16-bit pieces are exact in float; max of v and of -v gives max and -min per piece.
  float v[8];
  for (int i = 0; i < 4; ++i) {
    v[i] = float((h >> (16 * i)) & 0xFFFF);
    v[4 + i] = -v[i];
  }
  tp.all_reduce_max(v, 8);
  bool same = true;
  for (int i = 0; i < 4; ++i) same = same && v[i] == -v[4 + i];
  check(same, "the ", tp.size(), " TP ranks of DP rank ", dp_rank,
        " do not hold the same samples for the next step (their sampler seed, state or token "
        "file differ): every rank of a TP group must read the same batch");
}

}  // namespace autotp
