#include "checkpoint/manifest.hpp"

#include <algorithm>
#include <filesystem>

#include "checkpoint/crc64.hpp"
#include "core/error.hpp"
#include "io/file_util.hpp"
#include "partition/partition_config.hpp"

namespace autotp {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string weights_file_name(int tp_rank) {
  return "weights_tp" + std::to_string(tp_rank) + ".h5";
}

std::string state_file_name(int tp_rank, int dp_rank) {
  return "optim_tp" + std::to_string(tp_rank) + "_dp" + std::to_string(dp_rank) + ".h5";
}

std::vector<std::string> checkpoint_files(int tp, int dp) {
  std::vector<std::string> f;
  for (int t = 0; t < tp; ++t) {
    f.push_back(weights_file_name(t));
    for (int d = 0; d < dp; ++d) f.push_back(state_file_name(t, d));
  }
  std::sort(f.begin(), f.end());
  return f;
}

json plan_to_json(const PartitionPlan& plan) {
  json params = json::array();
  for (auto& s : plan.params)
    params.push_back(
        {{"name", s.name}, {"shape", s.shape}, {"split_dim", s.split_dim}, {"parts", s.parts}});
  return {{"tp", plan.tp}, {"params", params}};
}

PartitionPlan plan_from_json(const json& j, const std::string& source) {
  PartitionPlan p;
  try {
    p.tp = j.at("tp").get<int64_t>();
    for (auto& e : j.at("params")) {
      ShardSpec s;
      s.name = e.at("name").get<std::string>();
      s.shape = e.at("shape").get<std::vector<int64_t>>();
      s.split_dim = e.at("split_dim").get<int>();
      s.parts = e.at("parts").get<std::vector<int64_t>>();
      s.tp = p.tp;
      p.params.push_back(s);
    }
  } catch (const json::exception& e) {
    fail(source, ": field 'plan' is malformed (", e.what(), ")");
  }
  return p;
}

PartitionPlan plan_at(const Manifest& m, int tp) {
  try {
    const json& tpj = m.json.at("training").at("tensor_parallel");
    return build_plan(PartitionConfig::from_json(tpj, m.path("manifest.json")), m.model, tp);
  } catch (const json::exception& e) {
    fail(m.path("manifest.json"), ": no training.tensor_parallel block (", e.what(), ")");
  } catch (const Error& e) {
    fail("cannot cut the checkpoint ", m.dir, " for tp_size ", tp, ": ", e.what());
  }
}

void check_same_model(const ModelConfig& stored, const ModelConfig& asked,
                      const std::string& checkpoint, const std::string& asked_name) {
  auto shapes = [](const ModelConfig& c) {
    std::string s =
        "hidden " + std::to_string(c.hidden_size) + ", layers " +
        std::to_string(c.num_hidden_layers) + ", heads " + std::to_string(c.num_attention_heads) +
        "/" + std::to_string(c.num_key_value_heads) + ", vocab " + std::to_string(c.vocab_size) +
        ", intermediate " + std::to_string(c.intermediate_size);
    return s;
  };
  bool same = stored.num_attention_heads == asked.num_attention_heads &&
              stored.num_key_value_heads == asked.num_key_value_heads &&
              stored.head_dim == asked.head_dim;
  auto a = stored.parameters(), b = asked.parameters();
  same = same && a.size() == b.size();
  for (size_t i = 0; same && i < a.size(); ++i)
    same = a[i].name == b[i].name && a[i].shape == b[i].shape;
  check(same, "checkpoint ", checkpoint, " holds another model (", shapes(stored),
        ") than --model_name ", asked_name, " (", shapes(asked),
        "): resume with the model the checkpoint was trained with, or use a new --save_dir");
}

json file_record(const std::string& path) {
  return {{"bytes", int64_t(fs::file_size(path))}, {"crc64", file_crc64(path)}};
}

void write_manifest(const std::string& dir, json j, const json& files) {
  j["files"] = files;
  write_text_file_atomic(dir + "/manifest.json", j.dump(2) + "\n");
}

Manifest Manifest::read(const std::string& dir) {
  Manifest m;
  m.dir = dir;
  const std::string path = m.path("manifest.json");
  const std::string other = ": load another checkpoint (--load SAVE_DIR/<step>)";
  check(fs::exists(path), path, " is missing: ", dir, " is not a complete autotp checkpoint",
        other);
  try {
    m.json = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON (", e.what(), ")", other);
  }
  const nlohmann::json& j = m.json;
  std::string field;
  try {
    field = "format";
    check(j.at("format") == "autotp-checkpoint", path, ": format is ", j.at("format").dump(),
          ", not \"autotp-checkpoint\"");
    field = "format_version";
    const int v = j.at("format_version").get<int>();
    check(v == kCheckpointVersion, path, ": format_version ", v, " but this autotp reads ",
          kCheckpointVersion, ": use the autotp that wrote it");
    field = "step";
    m.step = j.at("step").get<int64_t>();
    field = "topology";
    m.tp = j.at("topology").at("tp").get<int>();
    m.dp = j.at("topology").at("dp").get<int>();
    m.zero_stage = j.at("topology").at("zero_stage").get<int>();
    field = "optimizer.step_count";
    m.optimizer_steps = j.at("optimizer").at("step_count").get<int64_t>();
    field = "model";
    m.model = ModelConfig::from_json(j.at("model"), path + " (model)");
    field = "sampler";
    (void)j.at("sampler");
    field = "files";
    (void)j.at("files").items();
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": field '", field, "' is missing or malformed (", e.what(), ")", other);
  }
  m.plan = plan_from_json(j.at("plan"), path);
  check(m.tp >= 1 && m.dp >= 1 && m.plan.tp == m.tp, path, ": topology tp ", m.tp, " x dp ", m.dp,
        " does not match plan.tp ", m.plan.tp, ": the manifest is corrupt", other);

  // The files the topology needs must be exactly those listed, present, of the listed size.
  std::vector<std::string> listed;
  for (auto& [name, rec] : j.at("files").items()) listed.push_back(name);
  std::sort(listed.begin(), listed.end());
  const auto need = checkpoint_files(m.tp, m.dp);
  if (listed != need) {
    std::string l, n;
    for (auto& s : listed) l += " " + s;
    for (auto& s : need) n += " " + s;
    fail(path, ": topology TP ", m.tp, " x DP ", m.dp, " needs the files", n, " but 'files' lists",
         l, ": the manifest does not match its files", other);
  }
  for (auto& name : need) {
    const std::string f = m.path(name);
    check(fs::exists(f), f, " is missing (manifest.json lists it): the checkpoint is incomplete",
          other);
    const int64_t want = j["files"][name].at("bytes").get<int64_t>();
    check(int64_t(fs::file_size(f)) == want, f, " has ", fs::file_size(f),
          " bytes but manifest.json records ", want, ": the file is truncated or was replaced",
          other);
  }
  return m;
}

void verify_checksums(const Manifest& m) {
  for (auto& [name, rec] : m.json.at("files").items()) {
    const std::string want = rec.at("crc64").get<std::string>(), got = file_crc64(m.path(name));
    check(got == want, m.path(name), ": checksum mismatch (CRC-64 ", got, ", manifest.json says ",
          want, "): the file is corrupt; load another checkpoint (--load SAVE_DIR/<step>)");
  }
}

namespace {

bool is_step_name(const std::string& s) {
  return !s.empty() && s.size() < 19 && std::all_of(s.begin(), s.end(), ::isdigit);
}

std::vector<int64_t> complete_steps(const std::string& save_dir) {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(save_dir, ec)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && is_step_name(n) && fs::exists(e.path() / "manifest.json"))
      steps.push_back(std::stoll(n));
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

}  // namespace

std::string latest_checkpoint(const std::string& save_dir) {
  const std::string latest = save_dir + "/latest";
  if (fs::exists(latest)) {
    std::string s = read_text_file(latest);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    check(is_step_name(s), latest, ": holds '", s, "', not a step number: remove it to resume ",
          "from the newest complete checkpoint, or --load SAVE_DIR/<step>");
    const std::string dir = save_dir + "/" + s;
    check(fs::exists(dir + "/manifest.json"), latest, " names step ", s, " but ", dir,
          "/manifest.json is missing: --load another checkpoint of ", save_dir);
    return dir;
  }
  auto steps = complete_steps(save_dir);
  return steps.empty() ? "" : save_dir + "/" + std::to_string(steps.back());
}

std::string resolve_checkpoint(const std::string& path) {
  if (fs::exists(path + "/manifest.json")) return path;
  check(fs::is_directory(path), path, ": no such checkpoint or save directory");
  std::string c = latest_checkpoint(path);
  check(!c.empty(), path, " is neither a checkpoint (no manifest.json) nor a save directory ",
        "holding one");
  return c;
}

void commit_checkpoint(const std::string& tmp_dir, const std::string& save_dir, int64_t step,
                       int64_t keep_last) {
  fsync_file(tmp_dir);
  const std::string dir = save_dir + "/" + std::to_string(step);
  const std::string old = save_dir + "/.old-" + std::to_string(step);
  const bool replacing = fs::exists(dir);  // a run restarted from an earlier step saves again
  if (replacing) {
    fs::remove_all(old);
    rename_into_place(dir, old);
  }
  rename_into_place(tmp_dir, dir);
  fsync_file(save_dir);
  write_text_file_atomic(save_dir + "/latest", std::to_string(step) + "\n");
  fsync_file(save_dir);
  if (replacing) fs::remove_all(old);
  if (keep_last <= 0) return;
  auto steps = complete_steps(save_dir);
  for (size_t i = 0; i + size_t(keep_last) < steps.size(); ++i)
    if (steps[i] != step) fs::remove_all(save_dir + "/" + std::to_string(steps[i]));
}

}  // namespace autotp
