#include "checkpoint/train_checkpoint.hpp"

#include <cstring>
#include <filesystem>
#include <vector>

#include "checkpoint/checkpoint_writer.hpp"
#include "dist/mpi_main.hpp"

namespace autotp {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string bcast_string(MPI_Comm c, std::string s) {
  int n = int(s.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, c);
  s.resize(size_t(n));
  MPI_Bcast(s.data(), n, MPI_CHAR, 0, c);
  return s;
}

// Every rank's string, on rank 0 (empty elsewhere).
std::vector<std::string> gather_strings(MPI_Comm c, const std::string& mine) {
  int rank, size;
  MPI_Comm_rank(c, &rank);
  MPI_Comm_size(c, &size);
  int n = int(mine.size());
  std::vector<int> lens(static_cast<size_t>(size)), offs(static_cast<size_t>(size));
  MPI_Gather(&n, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, c);
  std::string all;
  if (rank == 0) {
    int at = 0;
    for (int r = 0; r < size; ++r) offs[size_t(r)] = at, at += lens[size_t(r)];
    all.resize(size_t(at));
  }
  MPI_Gatherv(mine.data(), n, MPI_CHAR, all.data(), lens.data(), offs.data(), MPI_CHAR, 0, c);
  std::vector<std::string> out;
  if (rank == 0)
    for (int r = 0; r < size; ++r) out.push_back(all.substr(size_t(offs[r]), size_t(lens[r])));
  return out;
}

// f() on world rank 0; its Error becomes the same CollectiveError on every rank.
template <typename F>
void on_root(const Topology& topo, F&& f) {
  std::string err;
  if (topo.world_rank == 0) {
    try {
      f();
    } catch (const std::exception& e) {
      err = e.what();
      if (err.empty()) err = "unknown error";
    }
  }
  err = bcast_string(topo.world, err);
  if (!err.empty()) throw CollectiveError(err);
}

}  // namespace

std::string save_checkpoint(const std::string& save_dir, int64_t step, int64_t keep_last,
                            Phi3Model& model, ZeroOptimizer& opt, const Topology& topo,
                            const RunState& state) {
  const std::string tmp = save_dir + "/.tmp-" + std::to_string(step);
  on_root(topo, [&] {
    fs::create_directories(save_dir);
    fs::remove_all(tmp);  // a crashed earlier attempt
    fs::create_directories(tmp);
  });

  // Each rank's files, as {"ok": {name: record}} or {"error": message}.
  json mine;
  try {
    json files;
    if (topo.dp_rank == 0)
      files[weights_file_name(topo.tp_rank)] =
          write_weights_file(tmp, model.plan(), topo.tp_rank, [&](const ShardSpec& s, float* out) {
            auto h = model.param_shard(s.name);
            std::memcpy(out, h.data(), h.size() * sizeof(float));
          });
    // Stage 0 holds the whole buffer; every stage stores only this DP rank's range.
    std::vector<float> host[3];
    const OptState all[] = {OptState::Master, OptState::ExpAvg, OptState::ExpAvgSq};
    for (int i = 0; i < 3; ++i) host[i] = opt.state_to_host(all[i]);
    const size_t base = opt.state_offset();
    files[state_file_name(topo.tp_rank, topo.dp_rank)] = write_state_file(
        tmp, topo.tp_rank, topo.dp_rank, topo.dp, model.layout().total,
        [&](OptState s, size_t lo, size_t hi, float* out) {
          std::memcpy(out, host[int(s)].data() + (lo - base), (hi - lo) * sizeof(float));
        });
    mine["ok"] = files;
  } catch (const std::exception& e) {
    mine["error"] = "rank " + std::to_string(topo.world_rank) + ": " + e.what();
  }
  auto all = gather_strings(topo.world, mine.dump());

  const std::string dir = save_dir + "/" + std::to_string(step);
  on_root(topo, [&] {
    json files = json::object();
    try {
      for (auto& s : all) {
        json r = json::parse(s);
        if (r.contains("error"))
          fail("checkpoint of step ", step, " not written (", r["error"].get<std::string>(),
               "); the previous checkpoint in ", save_dir, " is untouched");
        files.update(r["ok"]);
      }
      json j = manifest_json(step, topo.tp, topo.dp, opt.stage(), model.config(), model.plan(),
                             opt.step_count(), state.training, state.sampler, state.rng);
      write_manifest(tmp, j, files);
      commit_checkpoint(tmp, save_dir, step, keep_last);
    } catch (...) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
      throw;
    }
  });
  return dir;
}

Manifest load_checkpoint(const std::string& dir, Phi3Model& model, ZeroOptimizer& opt,
                         const Topology& topo, const std::string& model_name) {
  on_root(topo, [&] {
    Manifest m = Manifest::read(dir);
    check_same_model(m.model, model.config(), dir, model_name);
    verify_checksums(m);
  });
  CheckpointReader rd(Manifest::read(dir));
  std::vector<float> buf(opt.state_numel());
  const size_t lo = opt.state_offset();
  for (OptState s : {OptState::Master, OptState::ExpAvg, OptState::ExpAvgSq}) {
    rd.read_state(model.layout(), topo.tp_rank, s, lo, lo + buf.size(), buf.data());
    opt.state_from_host(s, buf.data());
  }
  opt.set_step_count(rd.manifest().optimizer_steps);
  opt.publish_params();
  model.params_changed();
  return rd.manifest();
}

}  // namespace autotp
