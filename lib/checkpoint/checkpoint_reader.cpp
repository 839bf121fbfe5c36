#include "checkpoint/checkpoint_reader.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"

namespace autotp {

namespace {

constexpr const char* kWeights = "weights";

// Both cut the tensor alike (same TP degree and split, or both whole): a stored rank's shard is
// the target rank's as it is.
bool same_cut(const ShardSpec& a, const ShardSpec& b) {
  if (a.shape != b.shape) return false;
  if (a.replicated() || b.replicated()) return a.replicated() && b.replicated();
  return a.tp == b.tp && a.split_dim == b.split_dim && a.parts == b.parts;
}

}  // namespace

const char* state_dataset(OptState s) {
  return s == OptState::Master ? "master" : s == OptState::ExpAvg ? "exp_avg" : "exp_avg_sq";
}

CheckpointReader::CheckpointReader(Manifest m)
    : m_(std::move(m)), stored_(ParamLayout::from_plan(m_.plan)) {}

const ShardReader& CheckpointReader::file(const std::string& name) {
  auto& f = files_[name];
  if (!f) f = std::make_unique<ShardReader>(m_.path(name));
  return *f;
}

void CheckpointReader::read_stored(int r, const char* which, size_t lo, size_t hi, float* out) {
  for (int d = 0; d < m_.dp && lo < hi; ++d) {
    auto [b, e] = ZeroOptimizer::shard_range(stored_.total, m_.dp, d);
    const size_t s = std::max(lo, b), t = std::min(hi, e);
    if (s >= t) continue;
    const ShardReader& f = file(state_file_name(r, d));
    check(f.int_attr("offset") == int64_t(b) && f.int_attr("numel") == int64_t(e - b), f.path(),
          " holds elements [", f.int_attr("offset"), ", +", f.int_attr("numel"),
          ") but the manifest's plan and topology put [", b, ", ", e,
          ") there: the manifest does not match its files; load another checkpoint");
    f.read(which, s - b, t - s, out + (s - lo));
  }
}

const std::vector<float>& CheckpointReader::full(const std::string& name, const char* which) {
  const std::string key = std::string(which) + "/" + name;
  if (key == full_key_) return full_;
  const ParamSlot& slot = stored_.at(name);
  const ShardSpec& spec = *slot.spec;
  full_.assign(size_t(spec.global_numel()), 0.0f);
  std::vector<float> local(slot.numel);
  const int ranks = spec.replicated() ? 1 : m_.tp;  // replicated: every rank holds it whole
  for (int r = 0; r < ranks; ++r) {
    if (std::strcmp(which, kWeights) == 0)
      file(weights_file_name(r)).read(name, 0, local.size(), local.data());
    else
      read_stored(r, which, slot.offset, slot.offset + slot.numel, local.data());
    insert_shard(spec, r, local.data(), full_.data(), sizeof(float));
  }
  full_key_ = key;
  return full_;
}

void CheckpointReader::read_state(const ParamLayout& target, int t, OptState which, size_t lo,
                                  size_t hi, float* out) {
  const char* ds = state_dataset(which);
  std::vector<float> local;
  for (auto& slot : target.slots) {
    const size_t b = std::max(lo, slot.offset), e = std::min(hi, slot.offset + slot.numel);
    if (b >= e) continue;
    const ParamSlot& st = stored_.at(slot.name);
    if (same_cut(*st.spec, *slot.spec)) {
      const int r = slot.spec->replicated() ? 0 : t;
      read_stored(r, ds, st.offset + (b - slot.offset), st.offset + (e - slot.offset),
                  out + (b - lo));
      continue;
    }
    local.resize(slot.numel);
    extract_shard(*slot.spec, t, full(slot.name, ds).data(), local.data(), sizeof(float));
    std::memcpy(out + (b - lo), local.data() + (b - slot.offset), (e - b) * sizeof(float));
  }
}

void CheckpointReader::read_weight(const ShardSpec& spec, int t, float* out) {
  const ShardSpec& st = *stored_.at(spec.name).spec;
  if (same_cut(st, spec)) {
    file(weights_file_name(spec.replicated() ? 0 : t))
        .read(spec.name, 0, size_t(spec.local_numel()), out);
    return;
  }
  extract_shard(spec, t, full(spec.name, kWeights).data(), out, sizeof(float));
}

std::vector<float> CheckpointReader::full_weight(const std::string& name) {
  return full(name, kWeights);
}

}  // namespace autotp
