#include "checkpoint/reshard.hpp"

#include <filesystem>

#include "checkpoint/checkpoint_writer.hpp"
#include "core/error.hpp"
#include "io/model_file.hpp"

namespace autotp {

namespace fs = std::filesystem;

namespace {

// The checkpoint verified: manifest, files and checksums.
Manifest open_verified(const std::string& src) {
  Manifest m = Manifest::read(resolve_checkpoint(src));
  verify_checksums(m);
  return m;
}

}  // namespace

std::string reshard_checkpoint(const std::string& src, const std::string& dst_save_dir, int tp,
                               int dp) {
  check(tp >= 1 && dp >= 1, "--tp_size ", tp, " and --dp_size ", dp, " must be at least 1");
  CheckpointReader rd(open_verified(src));
  const Manifest& m = rd.manifest();
  const PartitionPlan plan = plan_at(m, tp);
  const ParamLayout layout = ParamLayout::from_plan(plan);
  const std::string dir = dst_save_dir + "/" + std::to_string(m.step);
  check(!fs::exists(dir), dir, " exists: reshard into another directory");
  const std::string tmp = dst_save_dir + "/.tmp-" + std::to_string(m.step);
  fs::create_directories(dst_save_dir);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    nlohmann::json files = nlohmann::json::object();
    for (int t = 0; t < tp; ++t) {
      files[weights_file_name(t)] = write_weights_file(
          tmp, plan, t, [&](const ShardSpec& s, float* out) { rd.read_weight(s, t, out); });
      for (int d = 0; d < dp; ++d)
        files[state_file_name(t, d)] = write_state_file(
            tmp, t, d, dp, layout.total, [&](OptState s, size_t lo, size_t hi, float* out) {
              rd.read_state(layout, t, s, lo, hi, out);
            });
    }
    nlohmann::json j = m.json;
    j.erase("files");
    j["topology"]["tp"] = tp;
    j["topology"]["dp"] = dp;
    j["plan"] = plan_to_json(plan);
    write_manifest(tmp, j, files);
    commit_checkpoint(tmp, dst_save_dir, m.step, 0);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return dir;
}

void merge_checkpoint(const std::string& src, const std::string& out_h5) {
  CheckpointReader rd(open_verified(src));
  const Manifest& m = rd.manifest();
  ModelFileWriter w(out_h5, m.json.at("model"));
  for (auto& p : m.model.parameters())
    w.write(p.name, DType::F32, p.shape, rd.full_weight(p.name).data());
  w.finish();
}

}  // namespace autotp
