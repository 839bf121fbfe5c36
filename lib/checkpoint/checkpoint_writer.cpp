#include "checkpoint/checkpoint_writer.hpp"

#include <algorithm>
#include <vector>

namespace autotp {

namespace {

constexpr size_t kPiece = size_t(1) << 22;  // floats per write: 16 MiB of host memory

}  // namespace

nlohmann::json write_weights_file(const std::string& dir, const PartitionPlan& plan, int t,
                                  const std::function<void(const ShardSpec&, float*)>& source) {
  const std::string path = dir + "/" + weights_file_name(t);
  ShardWriter w(path);
  w.attr("tp_rank", t);
  w.attr("tp_size", plan.tp);
  for (auto& spec : plan.params) w.create(spec.name, spec.local_shape());
  std::vector<float> buf;
  for (auto& spec : plan.params) {
    buf.resize(size_t(spec.local_numel()));
    source(spec, buf.data());
    w.write(spec.name, 0, buf.size(), buf.data());
  }
  w.finish();
  return file_record(path);
}

nlohmann::json write_state_file(
    const std::string& dir, int t, int d, int dp, size_t total,
    const std::function<void(OptState, size_t, size_t, float*)>& source) {
  const std::string path = dir + "/" + state_file_name(t, d);
  auto [lo, hi] = ZeroOptimizer::shard_range(total, dp, d);
  ShardWriter w(path);
  w.attr("tp_rank", t);
  w.attr("dp_rank", d);
  w.attr("dp_size", dp);
  w.attr("total", int64_t(total));
  w.attr("offset", int64_t(lo));
  w.attr("numel", int64_t(hi - lo));
  const OptState all[] = {OptState::Master, OptState::ExpAvg, OptState::ExpAvgSq};
  for (OptState s : all) w.create(state_dataset(s), {int64_t(hi - lo)});
  std::vector<float> buf(std::min(kPiece, hi - lo));
  for (OptState s : all)
    for (size_t b = lo; b < hi; b += kPiece) {
      const size_t e = std::min(hi, b + kPiece);
      source(s, b, e, buf.data());
      w.write(state_dataset(s), b - lo, e - b, buf.data());
    }
  w.finish();
  return file_record(path);
}

nlohmann::json manifest_json(int64_t step, int tp, int dp, int zero_stage, const ModelConfig& model,
                             const PartitionPlan& plan, int64_t optimizer_steps,
                             const nlohmann::json& training, const nlohmann::json& sampler,
                             const nlohmann::json& rng) {
  return {{"format", "autotp-checkpoint"},
          {"format_version", kCheckpointVersion},
          {"step", step},
          {"topology", {{"tp", tp}, {"dp", dp}, {"zero_stage", zero_stage}}},
          {"model", model.to_json()},
          {"plan", plan_to_json(plan)},
          {"optimizer", {{"step_count", optimizer_steps}}},
          {"training", training},
          {"sampler", sampler},
          {"rng", rng}};
}

}  // namespace autotp
